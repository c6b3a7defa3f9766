//! Prometheus remote write bodies: 1.0 (`prometheus.WriteRequest`) and 2.0
//! (`io.prometheus.write.v2.Request`), decoded into a [`WriteBatch`] without copying labels.

use super::protobuf::{Reader, WIRE_I64, WIRE_LEN, WIRE_VARINT};
use super::{
    DecodeError, ExemplarRef, LabelRef, MAX_DECODED_MEMORY, MAX_LABELS_PER_EXEMPLAR,
    MAX_LABELS_PER_SERIES, SeriesEntry, Span, WriteBatch,
};
use crate::tsdb::Sample;

/// Which remote-write protocol a body was encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Picks the protocol from Content-Type as the remote write 2.0 spec says; `None` means 415.
pub fn protocol_of(content_type: Option<&str>) -> Option<Protocol> {
    let Some(ct) = content_type else {
        return Some(Protocol::V1);
    };
    let mut parts = ct.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|m| m.eq_ignore_ascii_case("application/x-protobuf"))
    {
        return None;
    }
    let mut protocol = Protocol::V1;
    for param in parts {
        let Some((k, v)) = param.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("proto") {
            protocol = match v.trim().trim_matches('"') {
                "prometheus.WriteRequest" => Protocol::V1,
                "io.prometheus.write.v2.Request" => Protocol::V2,
                _ => return None,
            };
        }
    }
    Some(protocol)
}

impl WriteBatch {
    /// Decodes the buffer as the given protocol.
    pub fn decode(&mut self, protocol: Protocol) -> Result<(), DecodeError> {
        if self.buf.len() > u32::MAX as usize {
            return Err(DecodeError::TooLarge(self.buf.len()));
        }
        match protocol {
            Protocol::V1 => self.decode_v1(),
            Protocol::V2 => self.decode_v2(),
        }
    }

    fn decode_v1(&mut self) -> Result<(), DecodeError> {
        let mut other_protocol = false;
        let mut r = Reader::new(0, self.buf.len());
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (start, end) = r.len_delimited(&self.buf)?;
                    self.decode_v1_series(start, end)?;
                }
                (3, WIRE_LEN) => {
                    r.len_delimited(&self.buf)?;
                    self.metadata += 1;
                }
                (4 | 5, WIRE_LEN) => {
                    r.len_delimited(&self.buf)?;
                    other_protocol = true;
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        // A 2.0 body sent as 1.0 would otherwise be answered 2xx with nothing stored.
        if other_protocol && self.series.is_empty() && self.metadata == 0 {
            return Err(DecodeError::WrongProtocol("2.0"));
        }
        self.check_budget()
    }

    /// Decodes one `prometheus.TimeSeries` (also the series of Thanos' forward message).
    pub(super) fn decode_v1_series(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let labels_start = self.labels.len() as u32;
        let labels_cap = labels_start as usize + MAX_LABELS_PER_SERIES;
        let samples_start = self.samples.len() as u32;
        let exemplars_start = self.exemplars.len() as u32;
        let mut entry = SeriesEntry::default();
        let mut r = Reader::new(start, end);
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let label = decode_label(&self.buf, s, e)?;
                    if self.labels.len() == labels_cap {
                        return Err(DecodeError::TooManyLabels);
                    }
                    self.labels.push(label);
                }
                (2, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let sample = decode_sample(&self.buf, s, e)?;
                    self.push_sample(sample)?;
                }
                (3, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    self.decode_v1_exemplar(s, e)?;
                }
                (4, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    self.push_histogram(s, e)?;
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        entry.labels = labels_start..self.labels.len() as u32;
        entry.samples = samples_start..self.samples.len() as u32;
        entry.exemplars = exemplars_start..self.exemplars.len() as u32;
        entry.raw = Span {
            off: start as u32,
            len: (end - start) as u32,
        };
        self.series.push(entry);
        self.check_budget_every_256_series()
    }

    fn decode_v2(&mut self) -> Result<(), DecodeError> {
        let mut other_protocol = false;
        let mut r = Reader::new(0, self.buf.len());
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (4, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    self.symbols.push(Span {
                        off: s as u32,
                        len: (e - s) as u32,
                    });
                }
                (5, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    self.decode_v2_series(s, e)?;
                }
                (1 | 3, WIRE_LEN) => {
                    r.len_delimited(&self.buf)?;
                    other_protocol = true;
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
            if self.symbols.len() & 0xffff == 0xffff {
                self.check_budget()?;
            }
        }
        // A 1.0 body sent as 2.0 would otherwise be answered 2xx with nothing stored.
        if other_protocol && self.series.is_empty() {
            return Err(DecodeError::WrongProtocol("1.0"));
        }
        // Symbols and series may come in any field order, so references are resolved at the end.
        if !self.series.is_empty() && self.symbols.first().is_none_or(|s| s.len != 0) {
            return Err(DecodeError::FirstSymbolNotEmpty);
        }
        // References are resolved into label spans, which cost memory here and label bytes in
        // every later copy; both are bounded, since one large symbol may be referenced many times.
        self.labels.reserve(self.label_refs.len() / 2);
        self.check_budget()?;
        let mut resolved_bytes = 0usize;
        for i in 0..self.series.len() {
            let refs = self.series_refs[i].clone();
            let refs = &self.label_refs[refs.start as usize..refs.end as usize];
            self.series[i].labels =
                resolve_refs(&self.symbols, refs, &mut self.labels, &mut resolved_bytes)?;
        }
        for i in 0..self.exemplars.len() {
            let refs = self.exemplar_refs[i].clone();
            let refs = &self.exemplar_label_refs[refs.start as usize..refs.end as usize];
            self.exemplars[i].labels = resolve_refs(
                &self.symbols,
                refs,
                &mut self.exemplar_labels,
                &mut resolved_bytes,
            )?;
        }
        self.check_budget()
    }

    /// Decodes one 1.0 `prometheus.Exemplar`: `labels = 1`, `value = 2`, `timestamp = 3`.
    // Rare next to samples: kept out of line so the series loop stays small.
    #[cold]
    #[inline(never)]
    fn decode_v1_exemplar(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let labels_start = self.exemplar_labels.len() as u32;
        let mut exemplar = ExemplarRef::default();
        let mut r = Reader::new(start, end);
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    if self.exemplar_labels.len() - labels_start as usize == MAX_LABELS_PER_EXEMPLAR
                    {
                        return Err(DecodeError::TooManyLabels);
                    }
                    let label = decode_label(&self.buf, s, e)?;
                    self.exemplar_labels.push(label);
                }
                (2, WIRE_I64) => exemplar.value = f64::from_bits(r.fixed64(&self.buf)?),
                (3, WIRE_VARINT) => exemplar.t = r.varint(&self.buf)? as i64,
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        exemplar.labels = labels_start..self.exemplar_labels.len() as u32;
        self.push_exemplar(exemplar)
    }

    /// Decodes one 2.0 `Exemplar`: `labels_refs = 1`, `value = 2`, `timestamp = 3`; its
    /// references are resolved with the series'.
    #[cold]
    #[inline(never)]
    fn decode_v2_exemplar(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let refs_start = self.exemplar_label_refs.len() as u32;
        let mut exemplar = ExemplarRef::default();
        let mut r = Reader::new(start, end);
        let push = |this: &mut Self, v: u64, too_many: &mut bool| {
            let r = u32::try_from(v)
                .map_err(|_| DecodeError::SymbolOutOfRange(v, this.symbols.len()))?;
            if this.exemplar_label_refs.len() - refs_start as usize >= 2 * MAX_LABELS_PER_EXEMPLAR {
                *too_many = true;
                return Ok(());
            }
            this.exemplar_label_refs.push(r);
            Ok(())
        };
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let mut packed = Reader::new(s, e);
                    while !packed.done() {
                        let v = packed.varint(&self.buf)?;
                        push(self, v, &mut exemplar.too_many_labels)?;
                    }
                }
                (1, WIRE_VARINT) => {
                    let v = r.varint(&self.buf)?;
                    push(self, v, &mut exemplar.too_many_labels)?;
                }
                (2, WIRE_I64) => exemplar.value = f64::from_bits(r.fixed64(&self.buf)?),
                (3, WIRE_VARINT) => exemplar.t = r.varint(&self.buf)? as i64,
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        self.exemplar_refs
            .push(refs_start..self.exemplar_label_refs.len() as u32);
        self.push_exemplar(exemplar)
    }

    fn push_exemplar(&mut self, exemplar: ExemplarRef) -> Result<(), DecodeError> {
        if self.exemplars.len() & 0xfff == 0xfff {
            self.check_budget()?;
        }
        self.exemplars.push(exemplar);
        Ok(())
    }

    fn decode_v2_series(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let refs_start = self.label_refs.len() as u32;
        let samples_start = self.samples.len() as u32;
        let exemplars_start = self.exemplars.len() as u32;
        let mut entry = SeriesEntry::default();
        let mut r = Reader::new(start, end);
        while !r.done() {
            let (field, wire) = r.key(&self.buf)?;
            match (field, wire) {
                (1, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let mut packed = Reader::new(s, e);
                    while !packed.done() {
                        let v = packed.varint(&self.buf)?;
                        self.push_label_ref(v, refs_start)?;
                    }
                }
                (1, WIRE_VARINT) => {
                    let v = r.varint(&self.buf)?;
                    self.push_label_ref(v, refs_start)?;
                }
                (2, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    let sample = decode_sample(&self.buf, s, e)?;
                    self.push_sample(sample)?;
                }
                (3, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    self.push_histogram(s, e)?;
                }
                (4, WIRE_LEN) => {
                    let (s, e) = r.len_delimited(&self.buf)?;
                    self.decode_v2_exemplar(s, e)?;
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        entry.samples = samples_start..self.samples.len() as u32;
        entry.exemplars = exemplars_start..self.exemplars.len() as u32;
        self.series_refs
            .push(refs_start..self.label_refs.len() as u32);
        self.series.push(entry);
        self.check_budget_every_256_series()
    }

    /// Appends a 2.0 symbol reference of the series whose references start at `refs_start`.
    #[inline]
    fn push_label_ref(&mut self, v: u64, refs_start: u32) -> Result<(), DecodeError> {
        // A reference that does not fit 32 bits would alias another symbol once truncated.
        let r =
            u32::try_from(v).map_err(|_| DecodeError::SymbolOutOfRange(v, self.symbols.len()))?;
        if self.label_refs.len() - refs_start as usize >= 2 * MAX_LABELS_PER_SERIES {
            return Err(DecodeError::TooManyLabels);
        }
        self.label_refs.push(r);
        Ok(())
    }
}

/// Resolves 2.0 `(name, value)` symbol references into labels appended to `out`, counting their
/// bytes into `resolved_bytes` (bounded by [`MAX_DECODED_MEMORY`]); returns the range they fill.
#[inline(always)]
fn resolve_refs(
    symbols: &[Span],
    refs: &[u32],
    out: &mut Vec<LabelRef>,
    resolved_bytes: &mut usize,
) -> Result<std::ops::Range<u32>, DecodeError> {
    if !refs.len().is_multiple_of(2) {
        return Err(DecodeError::OddLabelRefs);
    }
    let sym = |r: u32| {
        symbols
            .get(r as usize)
            .copied()
            .ok_or(DecodeError::SymbolOutOfRange(r.into(), symbols.len()))
    };
    let start = out.len() as u32;
    for pair in refs.chunks_exact(2) {
        let label = LabelRef {
            name: sym(pair[0])?,
            value: sym(pair[1])?,
        };
        *resolved_bytes += (label.name.len + label.value.len) as usize;
        out.push(label);
    }
    if *resolved_bytes > MAX_DECODED_MEMORY {
        return Err(DecodeError::DecodedTooLarge);
    }
    Ok(start..out.len() as u32)
}

// Inlined into the series loop, as it was before exemplars gave it a second caller (+10 % of
// decode instructions when out of line).
#[inline(always)]
fn decode_label(buf: &[u8], start: usize, end: usize) -> Result<LabelRef, DecodeError> {
    match canonical_label(&buf[start..end], start) {
        Some(label) => Ok(label),
        None => decode_label_fields(buf, start, end),
    }
}

/// [`decode_label`] field by field: any order, repeats, unknown fields.
fn decode_label_fields(buf: &[u8], start: usize, end: usize) -> Result<LabelRef, DecodeError> {
    let mut label = LabelRef::default();
    let mut r = Reader::new(start, end);
    while !r.done() {
        let (field, wire) = r.key(buf)?;
        match (field, wire) {
            (1, WIRE_LEN) => label.name = r.span(buf)?,
            (2, WIRE_LEN) => label.value = r.span(buf)?,
            _ => r.skip(buf, field, wire)?,
        }
    }
    Ok(label)
}

/// The label `bytes` (at offset `off` of the body) when they are what every sender writes:
/// the name (field 1) then the value (field 2), each shorter than 128 bytes, nothing else. Any
/// other form goes through the general field loop, which gives the same answer for this one.
#[inline]
fn canonical_label(bytes: &[u8], off: usize) -> Option<LabelRef> {
    let (&[0x0a, name_len], rest) = bytes.split_first_chunk::<2>()? else {
        return None;
    };
    let name_len = usize::from(name_len);
    let (_, rest) = rest.split_at_checked(name_len)?;
    let (&[0x12, value_len], rest) = rest.split_first_chunk::<2>()? else {
        return None;
    };
    if name_len >= 0x80 || value_len >= 0x80 || rest.len() != usize::from(value_len) {
        return None;
    }
    let span = |at: usize, len: usize| Span {
        off: (off + at) as u32,
        len: len as u32,
    };
    Some(LabelRef {
        name: span(2, name_len),
        value: span(4 + name_len, rest.len()),
    })
}

fn decode_sample(buf: &[u8], start: usize, end: usize) -> Result<Sample, DecodeError> {
    let mut sample = Sample { t: 0, v: 0.0 };
    let mut r = Reader::new(start, end);
    while !r.done() {
        let (field, wire) = r.key(buf)?;
        match (field, wire) {
            (1, WIRE_I64) => sample.v = f64::from_bits(r.fixed64(buf)?),
            (2, WIRE_VARINT) => sample.t = r.varint(buf)? as i64,
            _ => r.skip(buf, field, wire)?,
        }
    }
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages::{v1, v2};
    use prost::Message;

    #[test]
    fn the_label_fast_path_agrees_with_the_field_loop() {
        let field = |f: u8, bytes: &[u8]| {
            let mut out = Vec::new();
            crate::wire::protobuf::put_len_field(&mut out, f, bytes);
            out
        };
        let long = vec![b'n'; 200];
        let cases: Vec<Vec<u8>> = vec![
            [field(1, b"job"), field(2, b"node")].concat(),
            [field(1, b""), field(2, b"v")].concat(),
            [field(1, b"a"), field(2, b"")].concat(),
            [field(2, b"node"), field(1, b"job")].concat(),
            [field(1, &long), field(2, b"v")].concat(),
            [field(1, b"a"), field(2, &long)].concat(),
            [field(1, b"a"), field(2, b"v"), field(3, b"x")].concat(),
            [field(1, b"a"), field(1, b"b"), field(2, b"v")].concat(),
            field(1, b"a"),
            vec![],
            vec![0x0a, 0x05, b'a'],
            vec![0x0a, 0x01, b'a', 0x12, 0x03, b'v'],
        ];
        let mut fast = 0;
        for (i, case) in cases.iter().enumerate() {
            // At an offset, as labels sit inside a body.
            let buf = [&[0xee; 3][..], case].concat();
            let general = decode_label_fields(&buf, 3, buf.len());
            if let Some(l) = canonical_label(&buf[3..], 3) {
                fast += 1;
                let g = general.unwrap_or_else(|e| panic!("case {i}: {e:?}"));
                assert_eq!((l.name, l.value), (g.name, g.value), "case {i}");
            }
            let both = decode_label(&buf, 3, buf.len());
            assert_eq!(
                both.map(|l| (l.name, l.value)),
                decode_label_fields(&buf, 3, buf.len()).map(|l| (l.name, l.value)),
                "case {i}"
            );
        }
        assert_eq!(fast, 3, "the canonical forms take the fast path");
    }

    fn batch_of(bytes: Vec<u8>, protocol: Protocol) -> Result<WriteBatch, DecodeError> {
        let mut b = WriteBatch::with_body(bytes);
        b.decode(protocol)?;
        Ok(b)
    }

    fn v1_request(series: Vec<v1::TimeSeries>) -> Vec<u8> {
        v1::WriteRequest {
            timeseries: series,
            metadata: vec![],
        }
        .encode_to_vec()
    }

    #[test]
    fn v1_round_trip_borrows_labels_and_keeps_stale_bits() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let body = v1_request(vec![
            v1::series(
                &[("__name__", "up"), ("job", "a")],
                &[(1000, 1.0), (2000, stale)],
            ),
            v1::series(&[("__name__", "x")], &[(5, -42.5)]),
        ]);
        let b = batch_of(body, Protocol::V1).unwrap();
        assert_eq!(b.series.len(), 2);
        let labels: Vec<_> = b.series_labels(0).collect();
        assert_eq!(
            labels,
            vec![(&b"__name__"[..], &b"up"[..]), (&b"job"[..], &b"a"[..])]
        );
        assert_eq!(b.series_samples(0)[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!(b.series_samples(1)[0], Sample { t: 5, v: -42.5 });
    }

    #[test]
    fn v2_histograms_decode_into_their_series() {
        use tsdb_format::histogram::{Histogram, Span};
        let h = Histogram {
            schema: 2,
            count: 3,
            sum: 4.5,
            positive_spans: vec![Span {
                offset: 1,
                length: 2,
            }],
            positive_buckets: vec![1, 1],
            ..Histogram::default()
        };
        let req = v2::Request {
            symbols: vec!["".into(), "__name__".into(), "h".into()],
            timeseries: vec![v2::TimeSeries {
                labels_refs: vec![1, 2],
                histograms: vec![v1::Histogram::from_int(77, &h)],
                ..Default::default()
            }],
        };
        let b = batch_of(req.encode_to_vec(), Protocol::V2).unwrap();
        assert_eq!(
            b.series_histograms(0),
            [crate::tsdb::HistogramSample {
                t: 77,
                h: crate::tsdb::HistogramValue::Int(h)
            }]
        );
    }

    #[test]
    fn v1_counts_histograms_exemplars_and_metadata() {
        let mut ts = v1::series(&[("__name__", "h")], &[]);
        ts.histograms.push(v1::Histogram {
            sum: 1.0,
            schema: 0,
            timestamp: 1,
            ..Default::default()
        });
        ts.exemplars.push(v1::Exemplar {
            labels: vec![v1::Label {
                name: "trace_id".into(),
                value: "abc".into(),
            }],
            value: 1.5,
            timestamp: 7,
        });
        let body = v1::WriteRequest {
            timeseries: vec![ts],
            metadata: vec![v1::MetricMetadata::default()],
        }
        .encode_to_vec();
        let b = batch_of(body, Protocol::V1).unwrap();
        assert_eq!((b.series_histograms(0).len(), b.metadata), (1, 1));
        let ex = b.series_exemplars(0);
        assert_eq!(ex.len(), 1);
        assert_eq!((ex[0].value, ex[0].t), (1.5, 7));
        let labels: Vec<_> = b.exemplar_labels(&ex[0]).collect();
        assert_eq!(labels, [(&b"trace_id"[..], &b"abc"[..])]);
    }

    #[test]
    fn v2_resolves_exemplar_labels_whatever_the_field_order() {
        let mut req = v2::request(&[(&[("__name__", "up")], &[(1, 1.0)])]);
        req.symbols
            .extend(["trace_id".to_string(), "t1".to_string()]);
        let (name, value) = (req.symbols.len() as u32 - 2, req.symbols.len() as u32 - 1);
        // The exemplar comes before the series' own references on the wire.
        let mut ts = req.timeseries.remove(0);
        ts.exemplars.push(v2::Exemplar {
            labels_refs: vec![name, value],
            value: 2.0,
            timestamp: 9,
        });
        let mut body = Vec::new();
        for (i, s) in req.symbols.iter().enumerate() {
            if i == 0 {
                body.extend([0x22, 0x00]);
                continue;
            }
            prost::encoding::string::encode(4, s, &mut body);
        }
        let mut series = Vec::new();
        prost::encoding::message::encode(4, &ts.exemplars[0], &mut series);
        prost::encoding::uint32::encode_packed(1, &ts.labels_refs, &mut series);
        prost::encoding::message::encode(2, &ts.samples[0], &mut series);
        prost::encoding::bytes::encode(5, &series, &mut body);
        let b = batch_of(body, Protocol::V2).unwrap();
        let labels: Vec<_> = b.series_labels(0).collect();
        assert_eq!(labels, [(&b"__name__"[..], &b"up"[..])]);
        let ex = b.series_exemplars(0);
        assert_eq!((ex.len(), ex[0].value, ex[0].t), (1, 2.0, 9));
        let labels: Vec<_> = b.exemplar_labels(&ex[0]).collect();
        assert_eq!(labels, [(&b"trace_id"[..], &b"t1"[..])]);
    }

    #[test]
    fn v2_resolves_symbols() {
        let req = v2::request(&[
            (&[("__name__", "up"), ("job", "a")], &[(1, 1.0), (2, 2.0)]),
            (&[("__name__", "up"), ("job", "b")], &[(3, 3.0)]),
        ]);
        let b = batch_of(req.encode_to_vec(), Protocol::V2).unwrap();
        assert_eq!(b.series.len(), 2);
        assert_eq!(b.series_string(1), r#"{__name__="up", job="b"}"#);
        assert_eq!(
            b.series_samples(0),
            &[Sample { t: 1, v: 1.0 }, Sample { t: 2, v: 2.0 }]
        );
    }

    #[test]
    fn v2_rejects_bad_symbol_tables() {
        let mut req = v2::request(&[(&[("a", "b")], &[(1, 1.0)])]);
        req.timeseries[0].labels_refs = vec![1, 99];
        assert_eq!(
            batch_of(req.encode_to_vec(), Protocol::V2).unwrap_err(),
            DecodeError::SymbolOutOfRange(99, 3)
        );
        let mut req = v2::request(&[(&[("a", "b")], &[(1, 1.0)])]);
        req.timeseries[0].labels_refs = vec![1];
        assert_eq!(
            batch_of(req.encode_to_vec(), Protocol::V2).unwrap_err(),
            DecodeError::OddLabelRefs
        );
        let mut req = v2::request(&[(&[("a", "b")], &[(1, 1.0)])]);
        req.symbols[0] = "x".into();
        assert_eq!(
            batch_of(req.encode_to_vec(), Protocol::V2).unwrap_err(),
            DecodeError::FirstSymbolNotEmpty
        );
    }

    #[test]
    fn malformed_protobuf_is_an_error() {
        let body = v1_request(vec![v1::series(&[("a", "b")], &[(1, 1.0)])]);
        assert_eq!(
            batch_of(body[..body.len() - 3].to_vec(), Protocol::V1).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            batch_of(vec![0x0b, 0x00], Protocol::V1).unwrap_err(),
            DecodeError::WireType(3, 1)
        );
        assert_eq!(
            batch_of(vec![0x00], Protocol::V1).unwrap_err(),
            DecodeError::FieldZero
        );
        assert_eq!(
            batch_of(
                vec![
                    0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ],
                Protocol::V1
            )
            .unwrap_err(),
            DecodeError::Varint
        );
    }

    #[test]
    fn content_types_pick_the_protocol() {
        assert_eq!(protocol_of(None), Some(Protocol::V1));
        assert_eq!(
            protocol_of(Some("application/x-protobuf")),
            Some(Protocol::V1)
        );
        assert_eq!(
            protocol_of(Some("application/x-protobuf;proto=prometheus.WriteRequest")),
            Some(Protocol::V1)
        );
        assert_eq!(
            protocol_of(Some(
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            )),
            Some(Protocol::V2)
        );
        assert_eq!(protocol_of(Some("application/json")), None);
        assert_eq!(
            protocol_of(Some("application/x-protobuf;proto=foo.Bar")),
            None
        );
    }
}
