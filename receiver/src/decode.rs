//! Remote-write request decoding without per-label allocation.
//!
//! A [`WriteBatch`] owns the decompressed body and describes it with flat, reusable arrays of
//! offsets (the layout VictoriaMetrics uses): label names and values are spans into the body, so a
//! request of any size costs a handful of `Vec` pushes and no string copies, and the batch is
//! reused across requests.

use std::ops::Range;

/// Largest decompressed body accepted, as the reference remote-write handler.
pub const MAX_DECODED_SIZE: usize = 32 << 20;
/// Most memory the decoded description of one request may take (label, sample and series arrays,
/// and the label bytes remote write 2.0 symbol references resolve to). Two bytes of protobuf can
/// describe a 16-byte label, so without it a 32 MiB body could cost hundreds of megabytes.
pub const MAX_DECODED_MEMORY: usize = 64 << 20;
/// Most labels one series may carry.
pub const MAX_LABELS_PER_SERIES: usize = 1024;
/// Longest label name, in bytes.
pub const MAX_LABEL_NAME_LEN: usize = 1024;
/// Longest label value, in bytes.
pub const MAX_LABEL_VALUE_LEN: usize = 64 << 10;

/// Rough length at which [`WriteBatch::series_string`] stops rendering labels.
pub const MAX_SERIES_STRING: usize = 256;

/// A byte range of the decompressed body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// Offset from the start of the body.
    pub off: u32,
    /// Length in bytes.
    pub len: u32,
}

/// One label of a series, as spans into the body.
#[derive(Debug, Clone, Copy, Default)]
pub struct LabelRef {
    /// Label name.
    pub name: Span,
    /// Label value.
    pub value: Span,
}

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub t: i64,
    /// The value, stored bit-exact (stale markers included).
    pub v: f64,
}

/// One time series of a request: ranges into the batch's label and sample arrays.
#[derive(Debug, Clone, Default)]
pub struct SeriesEntry {
    /// Range into [`WriteBatch::labels`].
    pub labels: Range<u32>,
    /// Range into [`WriteBatch::samples`].
    pub samples: Range<u32>,
    /// Native histogram samples carried by the series.
    pub histograms: u32,
    /// Exemplars carried by the series.
    pub exemplars: u32,
}

/// Which remote-write protocol a body was encoded with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `prometheus.WriteRequest`.
    V1,
    /// `io.prometheus.write.v2.Request`.
    V2,
}

/// Why a body could not be decoded; every variant means the request can never succeed (400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("protobuf: message truncated")]
    Truncated,
    #[error("protobuf: malformed varint")]
    Varint,
    #[error("protobuf: unsupported wire type {0} for field {1}")]
    WireType(u8, u32),
    #[error("protobuf: invalid field number 0")]
    FieldZero,
    #[error("remote write 2.0: symbol reference {0} out of range ({1} symbols)")]
    SymbolOutOfRange(u64, usize),
    #[error("remote write 2.0: odd number of label references")]
    OddLabelRefs,
    #[error("remote write 2.0: the first symbol must be the empty string")]
    FirstSymbolNotEmpty,
    #[error("request too large: {0} bytes after decompression")]
    TooLarge(usize),
    #[error(
        "request too large: its series, labels and samples take more than {MAX_DECODED_MEMORY} bytes decoded"
    )]
    DecodedTooLarge,
    #[error("a series has more than {MAX_LABELS_PER_SERIES} labels")]
    TooManyLabels,
    #[error("thanos.WriteRequest: tenant is not valid UTF-8")]
    TenantUtf8,
    #[error("body has no series but remote write {0} fields: is Content-Type right?")]
    WrongProtocol(&'static str),
}

impl DecodeError {
    /// Whether the request is refused for its size (413) rather than its form (400).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            DecodeError::TooLarge(_) | DecodeError::DecodedTooLarge
        )
    }
}

/// What a forwarded `thanos.WriteRequest` carries besides its series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardMeta {
    /// 1-indexed replica number; 0 means "not replicated yet".
    pub replica: i64,
    /// Tenants and the range of [`WriteBatch::series`] each one owns.
    pub groups: Vec<(String, Range<usize>)>,
}

/// Why one series of an otherwise well-formed request is rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The series has no labels.
    EmptyLabelSet,
    /// A label name is empty.
    EmptyLabelName,
    /// A label value is empty.
    EmptyLabelValue,
    /// A label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    InvalidLabelName,
    /// A label name or value is not UTF-8.
    InvalidUtf8,
    /// Labels are not sorted by name.
    UnsortedLabels,
    /// A label name or value is longer than allowed.
    LabelTooLong,
    /// A label name appears twice.
    DuplicateLabel,
    /// Samples of the series are not in timestamp order.
    OutOfOrderInRequest,
    /// Two samples share a timestamp but differ in value.
    ConflictingDuplicateInRequest,
    /// A remote write 2.0 series carries both samples and histograms.
    SamplesAndHistograms,
}

impl Rejection {
    /// Short reason used as a metric label value.
    pub fn reason(self) -> &'static str {
        match self {
            Rejection::EmptyLabelSet => "empty_labels",
            Rejection::EmptyLabelName => "empty_label_name",
            Rejection::EmptyLabelValue => "empty_label_value",
            Rejection::InvalidLabelName => "invalid_label_name",
            Rejection::InvalidUtf8 => "invalid_utf8",
            Rejection::UnsortedLabels => "out_of_order_labels",
            Rejection::LabelTooLong => "label_too_long",
            Rejection::DuplicateLabel => "duplicate_labels",
            Rejection::OutOfOrderInRequest => "out_of_order_in_request",
            Rejection::ConflictingDuplicateInRequest => "duplicate_sample_for_timestamp",
            Rejection::SamplesAndHistograms => "samples_and_histograms",
        }
    }

    /// Human-readable description for the response body.
    pub fn describe(self) -> &'static str {
        match self {
            Rejection::EmptyLabelSet => "series has no labels",
            Rejection::EmptyLabelName => "empty label name",
            Rejection::EmptyLabelValue => "empty label value",
            Rejection::InvalidLabelName => "invalid label name",
            Rejection::InvalidUtf8 => "label is not valid UTF-8",
            Rejection::UnsortedLabels => "labels are not sorted by name",
            Rejection::LabelTooLong => {
                "label name longer than 1024 bytes or value longer than 65536 bytes"
            }
            Rejection::DuplicateLabel => "duplicate label name",
            Rejection::OutOfOrderInRequest => "samples are not in timestamp order",
            Rejection::ConflictingDuplicateInRequest => {
                "two samples share a timestamp with different values"
            }
            Rejection::SamplesAndHistograms => "series carries both samples and histograms",
        }
    }
}

/// A decoded request: the body plus flat arrays that describe it; reuse it across requests.
#[derive(Debug, Default)]
pub struct WriteBatch {
    /// The decompressed protobuf body every [`Span`] points into.
    pub buf: Vec<u8>,
    /// Labels of all series, in request order.
    pub labels: Vec<LabelRef>,
    /// Series in request order.
    pub series: Vec<SeriesEntry>,
    /// Samples of all series, in request order.
    pub samples: Vec<Sample>,
    /// Metadata entries seen (remote write 1.0 field 3); they are not stored.
    pub metadata: u32,
    symbols: Vec<Span>,
    label_refs: Vec<u32>,
    series_refs: Vec<Range<u32>>,
}

impl WriteBatch {
    /// A batch over an already decompressed body; call [`WriteBatch::decode`] next.
    pub fn with_body(buf: Vec<u8>) -> Self {
        WriteBatch {
            buf,
            ..Default::default()
        }
    }

    /// The decoded arrays as `(len, capacity, element size)`.
    fn arrays(&self) -> [(usize, usize, usize); 6] {
        use std::mem::size_of;
        [
            (
                self.labels.len(),
                self.labels.capacity(),
                size_of::<LabelRef>(),
            ),
            (
                self.samples.len(),
                self.samples.capacity(),
                size_of::<Sample>(),
            ),
            (
                self.series.len(),
                self.series.capacity(),
                size_of::<SeriesEntry>(),
            ),
            (
                self.label_refs.len(),
                self.label_refs.capacity(),
                size_of::<u32>(),
            ),
            (
                self.symbols.len(),
                self.symbols.capacity(),
                size_of::<Span>(),
            ),
            (
                self.series_refs.len(),
                self.series_refs.capacity(),
                size_of::<Range<u32>>(),
            ),
        ]
    }

    /// Memory the decoded arrays take now (not their capacity).
    fn decoded_memory(&self) -> usize {
        self.arrays().iter().map(|(len, _, size)| len * size).sum()
    }

    fn check_budget(&self) -> Result<(), DecodeError> {
        if self.decoded_memory() > MAX_DECODED_MEMORY {
            return Err(DecodeError::DecodedTooLarge);
        }
        Ok(())
    }

    /// Heap bytes the batch holds on to (capacities), to decide whether it is worth pooling.
    pub fn retained_bytes(&self) -> usize {
        let arrays: usize = self.arrays().iter().map(|(_, cap, size)| cap * size).sum();
        self.buf.capacity() + arrays
    }

    /// Empties the batch, keeping its allocations.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.labels.clear();
        self.series.clear();
        self.samples.clear();
        self.metadata = 0;
        self.symbols.clear();
        self.label_refs.clear();
        self.series_refs.clear();
    }

    /// Decompresses a snappy block-format body into the batch buffer, enforcing `max_len`.
    pub fn decompress(&mut self, body: &[u8], max_len: usize) -> Result<(), SnappyError> {
        self.clear();
        let len = snap::raw::decompress_len(body).map_err(SnappyError::Corrupt)?;
        if len > max_len {
            return Err(SnappyError::TooLarge(len));
        }
        self.buf.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(body, &mut self.buf)
            .map_err(SnappyError::Corrupt)?;
        self.buf.truncate(n);
        Ok(())
    }

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

    /// Bytes of a span.
    #[inline]
    pub fn bytes(&self, span: Span) -> &[u8] {
        &self.buf[span.off as usize..(span.off + span.len) as usize]
    }

    /// Label pairs of series `i`.
    pub fn series_labels(
        &self,
        i: usize,
    ) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> + Clone + '_ {
        let r = &self.series[i].labels;
        self.labels[r.start as usize..r.end as usize]
            .iter()
            .map(|l| (self.bytes(l.name), self.bytes(l.value)))
    }

    /// Samples of series `i`.
    pub fn series_samples(&self, i: usize) -> &[Sample] {
        let r = &self.series[i].samples;
        &self.samples[r.start as usize..r.end as usize]
    }

    /// Label set of series `i` rendered as `{a="b", ...}` for error messages, cut after about
    /// [`MAX_SERIES_STRING`] bytes so a hostile series cannot blow up the response.
    pub fn series_string(&self, i: usize) -> String {
        let mut out = String::from("{");
        for (k, (n, v)) in self.series_labels(i).enumerate() {
            if out.len() > MAX_SERIES_STRING {
                out.push_str(", ...");
                break;
            }
            if k > 0 {
                out.push_str(", ");
            }
            let clip = |b: &[u8]| {
                String::from_utf8_lossy(&b[..b.len().min(MAX_SERIES_STRING)]).into_owned()
            };
            out.push_str(&format!("{}={:?}", clip(n), clip(v)));
        }
        out.push('}');
        out
    }

    /// Checks labels and sample order of series `i` against the remote-write rules.
    pub fn validate_series(&self, i: usize, protocol: Protocol) -> Result<(), Rejection> {
        let entry = &self.series[i];
        if entry.labels.is_empty() {
            return Err(Rejection::EmptyLabelSet);
        }
        let mut prev: Option<&[u8]> = None;
        for (name, value) in self.series_labels(i) {
            if name.is_empty() {
                return Err(Rejection::EmptyLabelName);
            }
            if name.len() > MAX_LABEL_NAME_LEN || value.len() > MAX_LABEL_VALUE_LEN {
                return Err(Rejection::LabelTooLong);
            }
            if value.is_empty() {
                return Err(Rejection::EmptyLabelValue);
            }
            // Labels are nearly always ASCII, which is checked a word at a time.
            let utf8 = |b: &[u8]| b.is_ascii() || std::str::from_utf8(b).is_ok();
            if !utf8(name) || !utf8(value) {
                return Err(Rejection::InvalidUtf8);
            }
            // 2.0 allows any UTF-8 name; 1.0 requires the classic charset.
            if protocol == Protocol::V1 && !valid_label_name(name) {
                return Err(Rejection::InvalidLabelName);
            }
            if let Some(p) = prev {
                match p.cmp(name) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return Err(Rejection::DuplicateLabel),
                    std::cmp::Ordering::Greater => return Err(Rejection::UnsortedLabels),
                }
            }
            prev = Some(name);
        }
        if protocol == Protocol::V2 && entry.histograms > 0 && !entry.samples.is_empty() {
            return Err(Rejection::SamplesAndHistograms);
        }
        let samples = self.series_samples(i);
        for w in samples.windows(2) {
            if w[1].t < w[0].t {
                return Err(Rejection::OutOfOrderInRequest);
            }
            if w[1].t == w[0].t && w[1].v.to_bits() != w[0].v.to_bits() {
                return Err(Rejection::ConflictingDuplicateInRequest);
            }
        }
        Ok(())
    }

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

    fn decode_v1_series(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let labels_start = self.labels.len() as u32;
        let labels_cap = labels_start as usize + MAX_LABELS_PER_SERIES;
        let samples_start = self.samples.len() as u32;
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
                    r.len_delimited(&self.buf)?;
                    entry.exemplars += 1;
                }
                (4, WIRE_LEN) => {
                    r.len_delimited(&self.buf)?;
                    entry.histograms += 1;
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        entry.labels = labels_start..self.labels.len() as u32;
        entry.samples = samples_start..self.samples.len() as u32;
        self.series.push(entry);
        self.check_budget_every_256_series()
    }

    /// The budget check of the series loops, every 256 series: labels per series and samples
    /// are bounded on their own, so between two checks at most ~5 MiB more can be decoded.
    #[inline]
    fn check_budget_every_256_series(&self) -> Result<(), DecodeError> {
        if self.series.len() & 0xff == 0 {
            self.check_budget()?;
        }
        Ok(())
    }

    /// Appends a sample, checking the memory budget every 64k samples so one huge series cannot
    /// run far past it.
    #[inline]
    fn push_sample(&mut self, sample: Sample) -> Result<(), DecodeError> {
        if self.samples.len() & 0xffff == 0xffff {
            self.check_budget()?;
        }
        self.samples.push(sample);
        Ok(())
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
            if !refs.len().is_multiple_of(2) {
                return Err(DecodeError::OddLabelRefs);
            }
            let start = self.labels.len() as u32;
            for pair in refs.chunks_exact(2) {
                let sym = |r: u32| {
                    self.symbols
                        .get(r as usize)
                        .copied()
                        .ok_or(DecodeError::SymbolOutOfRange(r.into(), self.symbols.len()))
                };
                let label = LabelRef {
                    name: sym(pair[0])?,
                    value: sym(pair[1])?,
                };
                resolved_bytes += (label.name.len + label.value.len) as usize;
                self.labels.push(label);
            }
            if resolved_bytes > MAX_DECODED_MEMORY {
                return Err(DecodeError::DecodedTooLarge);
            }
            self.series[i].labels = start..self.labels.len() as u32;
        }
        self.check_budget()
    }

    fn decode_v2_series(&mut self, start: usize, end: usize) -> Result<(), DecodeError> {
        let refs_start = self.label_refs.len() as u32;
        let samples_start = self.samples.len() as u32;
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
                    r.len_delimited(&self.buf)?;
                    entry.histograms += 1;
                }
                (4, WIRE_LEN) => {
                    r.len_delimited(&self.buf)?;
                    entry.exemplars += 1;
                }
                _ => r.skip(&self.buf, field, wire)?,
            }
        }
        entry.samples = samples_start..self.samples.len() as u32;
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

/// Why a body is not valid snappy.
#[derive(Debug, thiserror::Error)]
pub enum SnappyError {
    #[error("snappy: {0}")]
    Corrupt(snap::Error),
    #[error("request too large: {0} bytes after decompression")]
    TooLarge(usize),
}

/// Whether `name` matches the classic label-name charset `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &[u8]) -> bool {
    match name.split_first() {
        Some((first, rest)) => {
            (first.is_ascii_alphabetic() || *first == b'_')
                && rest.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        }
        None => false,
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

fn decode_label(buf: &[u8], start: usize, end: usize) -> Result<LabelRef, DecodeError> {
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

/// A cursor over `buf[pos..end]` that reads protobuf wire primitives.
struct Reader {
    pos: usize,
    end: usize,
}

impl Reader {
    fn new(pos: usize, end: usize) -> Self {
        Self { pos, end }
    }

    #[inline]
    fn done(&self) -> bool {
        self.pos >= self.end
    }

    #[inline]
    fn varint(&mut self, buf: &[u8]) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            if self.pos >= self.end {
                return Err(DecodeError::Truncated);
            }
            let b = buf[self.pos];
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(DecodeError::Varint)
    }

    #[inline]
    fn key(&mut self, buf: &[u8]) -> Result<(u32, u8), DecodeError> {
        let k = self.varint(buf)?;
        let field = (k >> 3) as u32;
        if field == 0 {
            return Err(DecodeError::FieldZero);
        }
        Ok((field, (k & 7) as u8))
    }

    #[inline]
    fn len_delimited(&mut self, buf: &[u8]) -> Result<(usize, usize), DecodeError> {
        let len = self.varint(buf)?;
        let start = self.pos;
        if len > (self.end - start) as u64 {
            return Err(DecodeError::Truncated);
        }
        self.pos = start + len as usize;
        Ok((start, self.pos))
    }

    #[inline]
    fn span(&mut self, buf: &[u8]) -> Result<Span, DecodeError> {
        let (s, e) = self.len_delimited(buf)?;
        Ok(Span {
            off: s as u32,
            len: (e - s) as u32,
        })
    }

    #[inline]
    fn fixed64(&mut self, buf: &[u8]) -> Result<u64, DecodeError> {
        if self.end - self.pos < 8 {
            return Err(DecodeError::Truncated);
        }
        let bytes: [u8; 8] = buf[self.pos..self.pos + 8].try_into().expect("8 bytes");
        self.pos += 8;
        Ok(u64::from_le_bytes(bytes))
    }

    fn skip(&mut self, buf: &[u8], field: u32, wire: u8) -> Result<(), DecodeError> {
        let n = match wire {
            WIRE_VARINT => {
                self.varint(buf)?;
                return Ok(());
            }
            WIRE_I64 => 8,
            WIRE_LEN => {
                self.len_delimited(buf)?;
                return Ok(());
            }
            WIRE_I32 => 4,
            _ => return Err(DecodeError::WireType(wire, field)),
        };
        if self.end - self.pos < n {
            return Err(DecodeError::Truncated);
        }
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{v1, v2};
    use prost::Message;

    fn batch_of(bytes: Vec<u8>, protocol: Protocol) -> Result<WriteBatch, DecodeError> {
        let mut b = WriteBatch {
            buf: bytes,
            ..Default::default()
        };
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
        assert!(b.validate_series(0, Protocol::V1).is_ok());
    }

    #[test]
    fn v1_counts_histograms_exemplars_and_metadata() {
        let mut ts = v1::series(&[("__name__", "h")], &[]);
        ts.histograms.push(v1::Histogram {
            sum: 1.0,
            schema: 0,
            timestamp: 1,
        });
        ts.exemplars.push(v1::Exemplar {
            labels: vec![],
            value: 1.0,
            timestamp: 1,
        });
        let body = v1::WriteRequest {
            timeseries: vec![ts],
            metadata: vec![v1::MetricMetadata::default()],
        }
        .encode_to_vec();
        let b = batch_of(body, Protocol::V1).unwrap();
        assert_eq!(
            (b.series[0].histograms, b.series[0].exemplars, b.metadata),
            (1, 1, 1)
        );
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
    fn every_label_rule_has_its_rejection() {
        let cases: Vec<(Vec<(&str, &str)>, Rejection)> = vec![
            (vec![], Rejection::EmptyLabelSet),
            (vec![("", "x")], Rejection::EmptyLabelName),
            (vec![("a", "")], Rejection::EmptyLabelValue),
            (vec![("1a", "x")], Rejection::InvalidLabelName),
            (vec![("b", "x"), ("a", "y")], Rejection::UnsortedLabels),
            (vec![("a", "x"), ("a", "y")], Rejection::DuplicateLabel),
        ];
        for (labels, want) in cases {
            let body = v1_request(vec![v1::series(&labels, &[(1, 1.0)])]);
            let b = batch_of(body, Protocol::V1).unwrap();
            assert_eq!(b.validate_series(0, Protocol::V1), Err(want), "{labels:?}");
        }
        // Invalid UTF-8 cannot be built with prost strings: patch the encoded value byte.
        let mut body = v1_request(vec![v1::series(&[("a", "x")], &[(1, 1.0)])]);
        let pos = body.iter().position(|&b| b == b'x').unwrap();
        body[pos] = 0xff;
        let b = batch_of(body, Protocol::V1).unwrap();
        assert_eq!(
            b.validate_series(0, Protocol::V1),
            Err(Rejection::InvalidUtf8)
        );
    }

    #[test]
    fn utf8_label_names_are_valid_in_v2_only() {
        let req = v2::request(&[(&[("ünïcode.name", "x")], &[(1, 1.0)])]);
        let b = batch_of(req.encode_to_vec(), Protocol::V2).unwrap();
        assert!(b.validate_series(0, Protocol::V2).is_ok());
        let body = v1_request(vec![v1::series(&[("ünïcode.name", "x")], &[(1, 1.0)])]);
        let b = batch_of(body, Protocol::V1).unwrap();
        assert_eq!(
            b.validate_series(0, Protocol::V1),
            Err(Rejection::InvalidLabelName)
        );
    }

    #[test]
    fn sample_order_rules() {
        let check = |samples: &[(i64, f64)]| {
            let body = v1_request(vec![v1::series(&[("a", "x")], samples)]);
            batch_of(body, Protocol::V1)
                .unwrap()
                .validate_series(0, Protocol::V1)
        };
        assert_eq!(
            check(&[(2, 1.0), (1, 1.0)]),
            Err(Rejection::OutOfOrderInRequest)
        );
        assert_eq!(
            check(&[(1, 1.0), (1, 2.0)]),
            Err(Rejection::ConflictingDuplicateInRequest)
        );
        assert_eq!(check(&[(1, 1.0), (1, 1.0)]), Ok(()));
    }

    #[test]
    fn v2_series_with_samples_and_histograms_is_rejected() {
        let mut req = v2::request(&[(&[("a", "x")], &[(1, 1.0)])]);
        req.timeseries[0].histograms.push(v1::Histogram::default());
        let b = batch_of(req.encode_to_vec(), Protocol::V2).unwrap();
        assert_eq!(
            b.validate_series(0, Protocol::V2),
            Err(Rejection::SamplesAndHistograms)
        );
    }

    #[test]
    fn decompress_enforces_snappy_and_size() {
        let mut b = WriteBatch::default();
        assert!(matches!(
            b.decompress(b"\xff\xff\xff\xff\xffnot snappy", MAX_DECODED_SIZE),
            Err(SnappyError::Corrupt(_))
        ));
        let body = crate::proto::snappy(&v1::WriteRequest {
            timeseries: vec![v1::series(&[("a", "x")], &[(1, 1.0)])],
            metadata: vec![],
        });
        assert!(matches!(
            b.decompress(&body, 4),
            Err(SnappyError::TooLarge(_))
        ));
        b.decompress(&body, MAX_DECODED_SIZE).unwrap();
        b.decode(Protocol::V1).unwrap();
        assert_eq!(b.series.len(), 1);
    }
}
