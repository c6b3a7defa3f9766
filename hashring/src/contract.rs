//! What the operator writes and the receiver reads besides the ring itself: the ports a receiver
//! pod listens on, the ConfigMap key of `hashrings.json`, and the pod annotation through which a
//! receiver tells the operator which ring it has in force. Both sides take them from here, and
//! an end-to-end test feeds the operator's receiver arguments to the receiver's parser.

/// gRPC port: forwards between receivers (and StoreAPI); the port of ring endpoints.
pub const GRPC_PORT: u16 = 10901;
/// Operational HTTP port: `/metrics`, `/-/ready`, `/-/healthy`, status pages.
pub const HTTP_PORT: u16 = 10902;
/// Remote-write port.
pub const REMOTE_WRITE_PORT: u16 = 19291;
/// Key of the hashring ConfigMap (and name of the mounted file), as in Thanos.
pub const HASHRINGS_KEY: &str = "hashrings.json";
/// Annotation a receiver sets on its own pod: the config hash (hex) of the ring it has in force,
/// so the operator stops leaving receivers only once every remaining one applies the new ring.
pub const RING_HASH_ANNOTATION: &str = "receiver.thanos-rs.io/ring-hash";
/// Environment variable holding the receiver's pod name (the downward API sets it).
pub const POD_NAME_ENV: &str = "POD_NAME";
