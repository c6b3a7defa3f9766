//! Remote-write protobuf messages (1.0 `prometheus.WriteRequest`, 2.0 `io.prometheus.write.v2.Request`).
//!
//! Fields carry the names and numbers of the specification's `.proto` files, which document them;
//! they are not repeated here.
//!
//! These prost types encode requests for tests, the fuzzer and the load generator; the receiver
//! decodes with the borrowing decoders of [`crate::wire`] and encodes forwards by hand
//! ([`crate::wire::forward::encode`]).

/// Remote write 1.0 messages, package `prometheus`.
#[allow(missing_docs)]
pub mod v1 {
    /// `prometheus.WriteRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    /// `prometheus.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// `prometheus.Label`.
    #[derive(Clone, PartialEq, Eq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }

    /// `prometheus.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    /// `prometheus.Exemplar`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `prometheus.Histogram` (also `io.prometheus.write.v2.Histogram`, fields 1..16).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {
        #[prost(oneof = "histogram::Count", tags = "1, 2")]
        pub count: Option<histogram::Count>,
        #[prost(double, tag = "3")]
        pub sum: f64,
        #[prost(sint32, tag = "4")]
        pub schema: i32,
        #[prost(double, tag = "5")]
        pub zero_threshold: f64,
        #[prost(oneof = "histogram::ZeroCount", tags = "6, 7")]
        pub zero_count: Option<histogram::ZeroCount>,
        #[prost(message, repeated, tag = "8")]
        pub negative_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "9")]
        pub negative_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "10")]
        pub negative_counts: Vec<f64>,
        #[prost(message, repeated, tag = "11")]
        pub positive_spans: Vec<BucketSpan>,
        #[prost(sint64, repeated, tag = "12")]
        pub positive_deltas: Vec<i64>,
        #[prost(double, repeated, tag = "13")]
        pub positive_counts: Vec<f64>,
        #[prost(int32, tag = "14")]
        pub reset_hint: i32,
        #[prost(int64, tag = "15")]
        pub timestamp: i64,
        #[prost(double, repeated, tag = "16")]
        pub custom_values: Vec<f64>,
    }

    /// The oneofs of `prometheus.Histogram`.
    pub mod histogram {
        /// Integer or float observation count.
        #[derive(Clone, Copy, PartialEq, prost::Oneof)]
        pub enum Count {
            #[prost(uint64, tag = "1")]
            CountInt(u64),
            #[prost(double, tag = "2")]
            CountFloat(f64),
        }

        /// Integer or float zero-bucket count.
        #[derive(Clone, Copy, PartialEq, prost::Oneof)]
        pub enum ZeroCount {
            #[prost(uint64, tag = "6")]
            ZeroCountInt(u64),
            #[prost(double, tag = "7")]
            ZeroCountFloat(f64),
        }
    }

    /// `prometheus.BucketSpan`.
    #[derive(Clone, Copy, PartialEq, Eq, prost::Message)]
    pub struct BucketSpan {
        #[prost(sint32, tag = "1")]
        pub offset: i32,
        #[prost(uint32, tag = "2")]
        pub length: u32,
    }

    fn spans(s: &[tsdb_format::histogram::Span]) -> Vec<BucketSpan> {
        s.iter()
            .map(|s| BucketSpan {
                offset: s.offset,
                length: s.length,
            })
            .collect()
    }

    fn reset_hint(h: tsdb_format::histogram::CounterResetHint) -> i32 {
        use tsdb_format::histogram::CounterResetHint as H;
        match h {
            H::Unknown => 0,
            H::CounterReset => 1,
            H::NotCounterReset => 2,
            H::Gauge => 3,
        }
    }

    impl Histogram {
        /// The wire form of an integer histogram at `timestamp`.
        pub fn from_int(timestamp: i64, h: &tsdb_format::histogram::Histogram) -> Self {
            Self {
                count: Some(histogram::Count::CountInt(h.count)),
                sum: h.sum,
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: Some(histogram::ZeroCount::ZeroCountInt(h.zero_count)),
                negative_spans: spans(&h.negative_spans),
                negative_deltas: h.negative_buckets.clone(),
                negative_counts: vec![],
                positive_spans: spans(&h.positive_spans),
                positive_deltas: h.positive_buckets.clone(),
                positive_counts: vec![],
                reset_hint: reset_hint(h.hint),
                timestamp,
                custom_values: h.custom_values.clone(),
            }
        }

        /// The wire form of a float histogram at `timestamp`.
        pub fn from_float(timestamp: i64, h: &tsdb_format::histogram::FloatHistogram) -> Self {
            Self {
                count: Some(histogram::Count::CountFloat(h.count)),
                sum: h.sum,
                schema: h.schema,
                zero_threshold: h.zero_threshold,
                zero_count: Some(histogram::ZeroCount::ZeroCountFloat(h.zero_count)),
                negative_spans: spans(&h.negative_spans),
                negative_deltas: vec![],
                negative_counts: h.negative_buckets.clone(),
                positive_spans: spans(&h.positive_spans),
                positive_deltas: vec![],
                positive_counts: h.positive_buckets.clone(),
                reset_hint: reset_hint(h.hint),
                timestamp,
                custom_values: h.custom_values.clone(),
            }
        }
    }

    /// `prometheus.MetricMetadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// Builds a series from label pairs and `(timestamp, value)` samples.
    pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
        TimeSeries {
            labels: labels
                .iter()
                .map(|(n, v)| Label {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            samples: samples
                .iter()
                .map(|&(timestamp, value)| Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }
}

/// Remote write 2.0 messages, package `io.prometheus.write.v2` (spec 2.0-rc.4).
#[allow(missing_docs)]
pub mod v2 {
    /// `io.prometheus.write.v2.Request`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Request {
        #[prost(string, repeated, tag = "4")]
        pub symbols: Vec<String>,
        #[prost(message, repeated, tag = "5")]
        pub timeseries: Vec<TimeSeries>,
    }

    /// `io.prometheus.write.v2.TimeSeries`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        #[prost(message, repeated, tag = "3")]
        pub histograms: Vec<super::v1::Histogram>,
        #[prost(message, repeated, tag = "4")]
        pub exemplars: Vec<Exemplar>,
        #[prost(message, optional, tag = "5")]
        pub metadata: Option<Metadata>,
    }

    /// `io.prometheus.write.v2.Sample`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
        #[prost(int64, tag = "3")]
        pub start_timestamp: i64,
    }

    /// `io.prometheus.write.v2.Exemplar`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Exemplar {
        #[prost(uint32, repeated, tag = "1")]
        pub labels_refs: Vec<u32>,
        #[prost(double, tag = "2")]
        pub value: f64,
        #[prost(int64, tag = "3")]
        pub timestamp: i64,
    }

    /// `io.prometheus.write.v2.Metadata`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Metadata {
        #[prost(int32, tag = "1")]
        pub r#type: i32,
        #[prost(uint32, tag = "3")]
        pub help_ref: u32,
        #[prost(uint32, tag = "4")]
        pub unit_ref: u32,
    }

    /// A series given as label pairs and `(timestamp, value)` samples.
    pub type SeriesSpec<'a> = (&'a [(&'a str, &'a str)], &'a [(i64, f64)]);

    /// Builds a v2 request from label sets and samples, interning symbols as a sender does.
    pub fn request(series: &[SeriesSpec<'_>]) -> Request {
        let mut symbols = vec![String::new()];
        let mut index = std::collections::HashMap::<String, u32>::new();
        let mut intern = |s: &str| -> u32 {
            *index.entry(s.to_string()).or_insert_with(|| {
                symbols.push(s.to_string());
                (symbols.len() - 1) as u32
            })
        };
        let timeseries = series
            .iter()
            .map(|(labels, samples)| TimeSeries {
                labels_refs: labels
                    .iter()
                    .flat_map(|(n, v)| [intern(n), intern(v)])
                    .collect(),
                samples: samples
                    .iter()
                    .map(|&(timestamp, value)| Sample {
                        value,
                        timestamp,
                        start_timestamp: 0,
                    })
                    .collect(),
                ..Default::default()
            })
            .collect();
        Request {
            symbols,
            timeseries,
        }
    }
}

/// Snappy-compresses an encoded message with the block format remote write requires.
pub fn snappy(message: &impl prost::Message) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&message.encode_to_vec())
        .expect("snappy compression of an in-memory buffer cannot fail")
}
