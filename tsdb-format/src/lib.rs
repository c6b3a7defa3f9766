//! Prometheus TSDB on-disk formats, one module per format, as Prometheus' `tsdb` package documents them.
