//! Thanos' forward message, `thanos.WriteRequest`: the series of one or more tenants plus the
//! replica number, as receivers send it to each other over `thanos.WriteableStore/RemoteWrite`.
//!
//! Decoding fills a [`WriteBatch`] like a remote-write body; encoding writes straight from a
//! decoded batch, so a forward costs no intermediate message objects. Fields: `timeseries = 1`,
//! `tenant = 2`, `replica = 3`, and Thanos' newer per-tenant tuples in field 4.

use std::ops::Range;

use super::messages::v1::Histogram;
use super::protobuf::{
    Reader, WIRE_LEN, WIRE_VARINT, len_field_size, put_fixed64_field, put_len_field,
    put_len_prefix, put_varint_field,
};
use super::{DecodeError, ExemplarRef, Span, WriteBatch};
use crate::tsdb::{HistogramSample, HistogramValue};
use tsdb_format::encoding::uvarint_len;

/// What a forwarded `thanos.WriteRequest` carries besides its series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardMeta {
    /// 1-indexed replica number; 0 means "not replicated yet".
    pub replica: i64,
    /// Tenants and the range of [`WriteBatch::series`] each one owns.
    pub groups: Vec<(String, Range<usize>)>,
}

impl WriteBatch {
    /// Decodes the buffer as a `thanos.WriteRequest` (fields 1-3, and the newer per-tenant field 4).
    pub fn decode_forward(&mut self) -> Result<ForwardMeta, DecodeError> {
        // `None` owner = the top-level tenant (field 2), which may come after the series.
        let mut owned: Vec<(Option<Span>, Range<usize>)> = Vec::new();
        let mut tenant = Span::default();
        let mut replica = 0;
        let mut r = Reader::new(0, self.buf.len());
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let i = self.series.len();
                    self.decode_v1_series(s, e)?;
                    match owned.last_mut() {
                        Some((None, range)) if range.end == i => range.end = i + 1,
                        _ => owned.push((None, i..i + 1)),
                    }
                }
                (2, WIRE_LEN) => tenant = r.span(&self.buf)?,
                (3, WIRE_VARINT) => replica = r.varint(&self.buf)? as i64,
                (4, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let first = self.series.len();
                    let mut tuple_tenant = Span::default();
                    let mut inner = Reader::new(s, e);
                    while !inner.done() {
                        let (f, w) = inner.key(&self.buf)?;
                        match (f, w) {
                            (1, WIRE_LEN) => {
                                let (s, e) = inner.len_delimited(&self.buf)?;
                                self.decode_v1_series(s, e)?;
                            }
                            (2, WIRE_LEN) => tuple_tenant = inner.span(&self.buf)?,
                            _ => inner.skip(&self.buf, f, w)?,
                        }
                    }
                    owned.push((Some(tuple_tenant), first..self.series.len()));
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        self.check_budget()?;
        let groups = owned
            .into_iter()
            .filter(|(_, range)| !range.is_empty())
            .map(|(owner, range)| {
                let name = std::str::from_utf8(self.bytes(owner.unwrap_or(tenant)))
                    .map_err(|_| DecodeError::TenantUtf8)?;
                Ok((name.to_string(), range))
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(ForwardMeta { replica, groups })
    }
}

/// Encodes `thanos.WriteRequest{timeseries: the listed series of batch, tenant, replica}` into `out`.
pub fn encode(batch: &WriteBatch, series: &[usize], tenant: &str, replica: i64, out: &mut Vec<u8>) {
    out.clear();
    // prometheus.Label{name = 1, value = 2} and prometheus.Sample{value = 1, timestamp = 2}.
    // prometheus.Exemplar{labels = 1, value = 2, timestamp = 3}.
    let label_len = |n: usize, v: usize| len_field_size(n) + len_field_size(v);
    let sample_len = |t: i64| 9 + 1 + uvarint_len(t as u64);
    let exemplar_len = |e: &ExemplarRef| {
        batch
            .exemplar_labels(e)
            .map(|(n, v)| len_field_size(label_len(n.len(), v.len())))
            .sum::<usize>()
            + 9
            + 1
            + uvarint_len(e.t as u64)
    };
    // Series decoded from a `prometheus.TimeSeries` are copied as they came: the same message,
    // without the per-field work (a forward of 10,000 series is ~4 MB).
    let raw_len = |i: usize| batch.series[i].raw.len as usize;
    out.reserve(
        series
            .iter()
            .map(|&i| len_field_size(raw_len(i)))
            .sum::<usize>()
            + len_field_size(tenant.len())
            + 11,
    );
    let mut histograms: Vec<Vec<u8>> = Vec::new();
    for &i in series {
        if raw_len(i) > 0 {
            put_len_field(out, 1, batch.bytes(batch.series[i].raw));
            continue;
        }
        let labels = batch.series_labels(i);
        let samples = batch.series_samples(i);
        let exemplars = batch.series_exemplars(i);
        // Rare next to samples: encoded through their prost message.
        histograms.clear();
        histograms.extend(batch.series_histograms(i).iter().map(histogram_message));
        let ts_len: usize = labels
            .clone()
            .map(|(n, v)| len_field_size(label_len(n.len(), v.len())))
            .sum::<usize>()
            + samples
                .iter()
                .map(|s| len_field_size(sample_len(s.t)))
                .sum::<usize>()
            + exemplars
                .iter()
                .map(|e| len_field_size(exemplar_len(e)))
                .sum::<usize>()
            + histograms
                .iter()
                .map(|h| len_field_size(h.len()))
                .sum::<usize>();
        put_len_prefix(out, 1, ts_len);
        for (n, v) in labels {
            put_len_prefix(out, 1, label_len(n.len(), v.len()));
            put_len_field(out, 1, n);
            put_len_field(out, 2, v);
        }
        for s in samples {
            put_len_prefix(out, 2, sample_len(s.t));
            put_fixed64_field(out, 1, s.v.to_bits());
            put_varint_field(out, 2, s.t as u64);
        }
        for e in exemplars {
            put_len_prefix(out, 3, exemplar_len(e));
            for (n, v) in batch.exemplar_labels(e) {
                put_len_prefix(out, 1, label_len(n.len(), v.len()));
                put_len_field(out, 1, n);
                put_len_field(out, 2, v);
            }
            put_fixed64_field(out, 2, e.value.to_bits());
            put_varint_field(out, 3, e.t as u64);
        }
        for h in &histograms {
            put_len_field(out, 4, h);
        }
    }
    put_len_field(out, 2, tenant.as_bytes());
    put_varint_field(out, 3, replica as u64);
}

/// `prometheus.Histogram` bytes of a histogram sample.
fn histogram_message(h: &HistogramSample) -> Vec<u8> {
    use prost::Message as _;
    match &h.h {
        HistogramValue::Int(x) => Histogram::from_int(h.t, x).encode_to_vec(),
        HistogramValue::Float(x) => Histogram::from_float(h.t, x).encode_to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Protocol;
    use crate::wire::messages::v1;
    use prost::Message;

    /// `thanos.WriteRequest` as Thanos defines it, for cross-checking our encoder.
    #[derive(Clone, PartialEq, prost::Message)]
    struct ThanosWriteRequest {
        #[prost(message, repeated, tag = "1")]
        timeseries: Vec<v1::TimeSeries>,
        #[prost(string, tag = "2")]
        tenant: String,
        #[prost(int64, tag = "3")]
        replica: i64,
    }

    #[test]
    fn forward_encoding_matches_prost_and_decodes_back() {
        let series = vec![
            v1::series(
                &[("__name__", "up"), ("job", "a")],
                &[(1000, 1.0), (-5, f64::from_bits(0x7ff0_0000_0000_0002))],
            ),
            {
                let mut ts = v1::series(&[("__name__", "x")], &[(1_700_000_000_000, 42.5)]);
                ts.exemplars.push(v1::Exemplar {
                    labels: vec![v1::Label {
                        name: "trace_id".into(),
                        value: "0af7651916cd43dd".into(),
                    }],
                    value: 0.25,
                    timestamp: 1_700_000_000_001,
                });
                ts
            },
            v1::series(&[("__name__", "skipped")], &[(1, 1.0)]),
        ];
        let mut batch = WriteBatch::with_body(
            v1::WriteRequest {
                timeseries: series.clone(),
                metadata: vec![],
            }
            .encode_to_vec(),
        );
        batch.decode(Protocol::V1).unwrap();
        let mut out = Vec::new();
        encode(&batch, &[0, 1], "team-a", 2, &mut out);
        let decoded = ThanosWriteRequest::decode(&out[..]).unwrap();
        assert_eq!(decoded.tenant, "team-a");
        assert_eq!(decoded.replica, 2);
        assert_eq!(decoded.timeseries.len(), 2);
        assert_eq!(decoded.timeseries[0].labels, series[0].labels);
        assert_eq!(decoded.timeseries[0].samples[0], series[0].samples[0]);
        assert_eq!(
            decoded.timeseries[0].samples[1].value.to_bits(),
            0x7ff0_0000_0000_0002
        );
        assert_eq!(decoded.timeseries[0].samples[1].timestamp, -5);
        assert_eq!(decoded.timeseries[1], series[1]);

        // The copied messages are the bytes the field-by-field encoder writes (what a batch
        // decoded from remote write 2.0 goes through).
        let mut encoded = Vec::new();
        let mut fresh = WriteBatch::with_body(batch.buf.clone());
        fresh.decode(Protocol::V1).unwrap();
        for entry in &mut fresh.series {
            entry.raw = crate::wire::Span::default();
        }
        encode(&fresh, &[0, 1], "team-a", 2, &mut encoded);
        assert_eq!(encoded, out);

        let mut back = WriteBatch::with_body(out);
        let meta = back.decode_forward().unwrap();
        assert_eq!(meta.replica, 2);
        assert_eq!(meta.groups, vec![("team-a".to_string(), 0..2)]);
        assert_eq!(back.series_string(1), r#"{__name__="x"}"#);
    }
}
