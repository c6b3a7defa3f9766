# The two images, for hosts with a container engine and registry access:
#   docker build -t thanos-receiver .                               (the receiver, default target)
#   docker build --target operator -t thanos-receiver-operator .
# Both hold the same root filesystem (scripts/image-rootfs.sh: the binaries, the libraries they
# link, CA certificates, user 65532; no shell). `make images` builds the same images without an
# engine, with umoci (scripts/build-images.sh).

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p receiver -p operator --bins \
 && scripts/image-rootfs.sh target/release /rootfs

FROM scratch AS operator
COPY --from=build /rootfs /
USER 65532:65532
WORKDIR /data
EXPOSE 8080
ENTRYPOINT ["/usr/bin/thanos-receiver-operator"]

# The receiver: a Thanos Receive StatefulSet's `args: [receive, ...]` work as they are.
FROM scratch AS receiver
COPY --from=build /rootfs /
USER 65532:65532
WORKDIR /data
VOLUME /data
EXPOSE 19291 10901 10902
ENTRYPOINT ["/usr/bin/thanos-receiver"]
CMD ["receive"]
