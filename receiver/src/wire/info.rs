//! Thanos' `thanos.info.Info/Info` messages, with the field numbers of Thanos v0.42's
//! `pkg/info/infopb/rpc.proto` and `pkg/store/labelpb/types.proto`. Thanos Query calls Info on
//! every endpoint to learn its label sets, time range and APIs before it sends queries. Only the
//! store section is filled, and the exemplars section when exemplars are stored (rules, targets,
//! metadata stay empty), so Thanos Query sends no request a receiver cannot answer.

/// `thanos.info.InfoResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct InfoResponse {
    /// One label set per tenant: the external labels its series carry.
    #[prost(message, repeated, tag = "1")]
    pub label_sets: Vec<ZLabelSet>,
    /// `receive`, as Thanos names the component.
    #[prost(string, tag = "2")]
    pub component_type: String,
    /// The Store API's time range and capabilities.
    #[prost(message, optional, tag = "3")]
    pub store: Option<StoreInfo>,
    /// The Exemplars API, when exemplars are stored.
    #[prost(message, optional, tag = "7")]
    pub exemplars: Option<ExemplarsInfo>,
}

/// `thanos.info.ExemplarsInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExemplarsInfo {
    /// Oldest exemplar time served.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// Newest exemplar time served.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
}

/// `thanos.info.StoreInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoreInfo {
    /// Oldest sample stored, in milliseconds.
    #[prost(int64, tag = "1")]
    pub min_time: i64,
    /// Newest time served: `i64::MAX` for a receiver, whose head keeps growing.
    #[prost(int64, tag = "2")]
    pub max_time: i64,
    /// Whether `Series` honours `shard_info`.
    #[prost(bool, tag = "3")]
    pub supports_sharding: bool,
    /// Whether `Series` honours `without_replica_labels`.
    #[prost(bool, tag = "5")]
    pub supports_without_replica_labels: bool,
    /// One entry per tenant: its external labels and time range.
    #[prost(message, repeated, tag = "6")]
    pub tsdb_infos: Vec<TsdbInfo>,
}

/// `thanos.info.TSDBInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TsdbInfo {
    /// The tenant's external labels.
    #[prost(message, optional, tag = "1")]
    pub labels: Option<ZLabelSet>,
    /// Oldest sample, in milliseconds.
    #[prost(int64, tag = "2")]
    pub min_time: i64,
    /// Newest sample, in milliseconds.
    #[prost(int64, tag = "3")]
    pub max_time: i64,
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
            store: Some(StoreInfo {
                min_time: 5,
                max_time: 0,
                supports_sharding: false,
                supports_without_replica_labels: true,
                tsdb_infos: vec![TsdbInfo {
                    labels: None,
                    min_time: 5,
                    max_time: 6,
                }],
            }),
            exemplars: None,
        };
        // label_sets(1) { labels(1) { name(1) "t" value(2) "a" } } ComponentType(2) "receive"
        // store(3) { min_time(1) 5, supports_without_replica_labels(5) true,
        //            tsdb_infos(6) { min_time(2) 5, max_time(3) 6 } }
        let mut want = vec![0x0a, 0x08, 0x0a, 0x06, 0x0a, 0x01, b't', 0x12, 0x01, b'a'];
        want.extend_from_slice(&[0x12, 0x07]);
        want.extend_from_slice(b"receive");
        want.extend_from_slice(&[
            0x1a, 0x0a, 0x08, 0x05, 0x28, 0x01, 0x32, 0x04, 0x10, 0x05, 0x18, 0x06,
        ]);
        assert_eq!(response.encode_to_vec(), want);
        // A Thanos answer with a section we do not fill (rules(4)) decodes too.
        let mut thanos = want.clone();
        thanos.extend_from_slice(&[0x22, 0x00]);
        assert_eq!(InfoResponse::decode(&thanos[..]).unwrap(), response);
        // exemplars(7) { min_time(1) -1 }
        let with = InfoResponse {
            exemplars: Some(ExemplarsInfo {
                min_time: -1,
                max_time: 0,
            }),
            ..response
        };
        let mut ex = want.clone();
        ex.extend_from_slice(&[0x3a, 0x0b, 0x08]);
        ex.extend_from_slice(&[0xff; 9]);
        ex.push(0x01);
        assert_eq!(with.encode_to_vec(), ex);
    }
}
