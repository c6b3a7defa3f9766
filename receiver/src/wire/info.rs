//! Thanos' `thanos.info.Info/Info` messages, with the field numbers of Thanos v0.42's
//! `pkg/info/infopb/rpc.proto` and `pkg/store/labelpb/types.proto`. Thanos Query calls Info on
//! every endpoint to learn its label sets, time range and APIs before it sends queries. The API
//! sections (field 3 on: store, rules, exemplars...) stay empty until those APIs are served, so
//! Thanos Query sends no request a receiver cannot answer.

/// `thanos.info.InfoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    /// One label set per tenant: the external labels its series carry.
    #[prost(message, repeated, tag = "1")]
    pub label_sets: Vec<ZLabelSet>,
    /// `receive`, as Thanos names the component.
    #[prost(string, tag = "2")]
    pub component_type: String,
}

/// `thanos.ZLabelSet`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ZLabelSet {
    /// Labels sorted by name.
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
}

/// `thanos.Label`: the same message as `prometheus.Label` (`name = 1`, `value = 2`).
pub use super::messages::v1::Label;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The bytes Thanos' gogo-generated code writes for this response, spelled out from the
    /// `.proto` field numbers, so compatibility does not rest on these types alone.
    #[test]
    fn encodes_thanos_field_numbers() {
        let response = InfoResponse {
            label_sets: vec![ZLabelSet {
                labels: vec![Label {
                    name: "t".into(),
                    value: "a".into(),
                }],
            }],
            component_type: "receive".into(),
        };
        // label_sets(1) { labels(1) { name(1) "t" value(2) "a" } } ComponentType(2) "receive"
        let mut want = vec![0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b't', 0x12, 0x01, b'a'];
        want.extend_from_slice(&[0x12, 0x07]);
        want.extend_from_slice(b"receive");
        assert_eq!(response.encode_to_vec(), want);
        // A Thanos answer with a store section decodes too: unknown fields are skipped.
        let mut thanos = want.clone();
        thanos.extend_from_slice(&[0x1a, 0x04, 0x08, 0x05, 0x18, 0x01]);
        assert_eq!(InfoResponse::decode(&thanos[..]).unwrap(), response);
    }
}
