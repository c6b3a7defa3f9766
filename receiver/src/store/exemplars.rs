//! `thanos.Exemplars/Exemplars` for Thanos Query: the exemplars of the series a PromQL
//! expression selects, per tenant with its external labels, as a Thanos receiver answers.

use std::sync::Arc;

use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use tonic::Status;

use super::{ReadError, Reads, series_matchers, with_external};
use crate::grpc::StreamMethod;
use crate::tsdb::{Matcher, MultiTsdb};
use crate::wire::exemplars::{Exemplar, ExemplarData, ExemplarsRequest, ExemplarsResponse};
use crate::wire::info::{Label, ZLabelSet};

/// The selectors of a PromQL expression: one matcher list per vector or matrix selector.
pub fn selectors(query: &str) -> Result<Vec<Vec<Matcher>>, ReadError> {
    let expr = promql_parser::parser::parse(query)
        .map_err(|e| ReadError::BadRequest(format!("query {query:?}: {e}")))?;
    let mut out = Vec::new();
    collect(&expr, &mut out)?;
    Ok(out)
}

fn collect(expr: &Expr, out: &mut Vec<Vec<Matcher>>) -> Result<(), ReadError> {
    match expr {
        Expr::VectorSelector(vs) => out.push(vector_matchers(vs)?),
        Expr::MatrixSelector(ms) => out.push(vector_matchers(&ms.vs)?),
        Expr::Aggregate(a) => {
            collect(&a.expr, out)?;
            if let Some(p) = &a.param {
                collect(p, out)?;
            }
        }
        Expr::Unary(u) => collect(&u.expr, out)?,
        Expr::Binary(b) => {
            collect(&b.lhs, out)?;
            collect(&b.rhs, out)?;
        }
        Expr::Paren(p) => collect(&p.expr, out)?,
        Expr::Subquery(s) => collect(&s.expr, out)?,
        Expr::Call(c) => {
            for arg in &c.args.args {
                collect(arg, out)?;
            }
        }
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) | Expr::Extension(_) => {}
    }
    Ok(())
}

fn vector_matchers(vs: &promql_parser::parser::VectorSelector) -> Result<Vec<Matcher>, ReadError> {
    let mut out = Vec::new();
    if let Some(name) = &vs.name {
        out.push(Matcher::Equal("__name__".into(), name.clone()));
    }
    if !vs.matchers.or_matchers.is_empty() {
        return Err(ReadError::BadRequest(
            "selectors with `or` between matchers are not supported for exemplars".into(),
        ));
    }
    for m in &vs.matchers.matchers {
        let bad = |e: regex::Error| ReadError::BadRequest(format!("{}: {e}", m.name));
        out.push(match &m.op {
            MatchOp::Equal => Matcher::Equal(m.name.clone(), m.value.clone()),
            MatchOp::NotEqual => Matcher::NotEqual(m.name.clone(), m.value.clone()),
            MatchOp::Re(_) => Matcher::regex(&m.name, &m.value).map_err(bad)?,
            MatchOp::NotRe(_) => Matcher::not_regex(&m.name, &m.value).map_err(bad)?,
        });
    }
    Ok(out)
}

fn label_set<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Option<ZLabelSet> {
    Some(ZLabelSet {
        labels: pairs
            .into_iter()
            .map(|(name, value)| Label {
                name: name.to_owned(),
                value: value.to_owned(),
            })
            .collect(),
    })
}

/// Answers a request: one message per series, sorted by its labels (external labels included).
pub fn exemplars(
    tsdb: &MultiTsdb,
    request: &ExemplarsRequest,
) -> Result<Vec<ExemplarsResponse>, ReadError> {
    let selectors = selectors(&request.query)?;
    let mut found: Vec<ExemplarData> = Vec::new();
    for db in tsdb.tenants() {
        let external = tsdb.external_labels(&db.name);
        // A matcher on an external label selects or deselects the tenant as a whole.
        let chosen: Vec<Vec<Matcher>> = selectors
            .iter()
            .filter_map(|m| series_matchers(m.clone(), &external))
            .collect();
        if chosen.is_empty() {
            continue;
        }
        for (labels, list) in db.select_exemplars(&chosen, request.start, request.end) {
            found.push(ExemplarData {
                series_labels: label_set(with_external(&labels, &external)),
                exemplars: list
                    .iter()
                    .map(|e| Exemplar {
                        labels: label_set(e.labels.iter()),
                        value: e.value,
                        ts: e.t,
                    })
                    .collect(),
            });
        }
    }
    let key = |d: &ExemplarData| {
        d.series_labels
            .as_ref()
            .map(|s| {
                s.labels
                    .iter()
                    .map(|l| (l.name.clone(), l.value.clone()))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    found.sort_by_cached_key(key);
    Ok(found
        .into_iter()
        .map(|data| ExemplarsResponse {
            data: Some(data),
            warning: None,
        })
        .collect())
}

/// The `thanos.Exemplars` service: reads run on the shared read runner, as Store API reads.
pub struct ExemplarsService {
    reads: Arc<Reads>,
}

impl ExemplarsService {
    /// A service reading through `reads`.
    pub fn new(reads: Arc<Reads>) -> Self {
        ExemplarsService { reads }
    }
}

impl StreamMethod for ExemplarsService {
    const SERVICE: &'static str = "thanos.Exemplars";
    const PATH: &'static str = crate::grpc::EXEMPLARS_PATH;

    fn call(
        self: &Arc<Self>,
        request: bytes::Bytes,
    ) -> tonic::codegen::BoxFuture<Vec<bytes::Bytes>, Status> {
        let this = Arc::clone(self);
        Box::pin(async move {
            use prost::Message as _;
            let request = ExemplarsRequest::decode(request)
                .map_err(|e| Status::invalid_argument(format!("ExemplarsRequest: {e}")))?;
            this.reads
                .run(move |tsdb, _| exemplars(tsdb, &request))
                .await
                .map(|frames| {
                    frames
                        .into_iter()
                        .map(|f| bytes::Bytes::from(f.encode_to_vec()))
                        .collect()
                })
                .map_err(|e| e.grpc_status())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_come_from_anywhere_in_the_expression() {
        let s = selectors(
            r#"histogram_quantile(0.9, sum by (le) (rate(req_bucket{job="a", code=~"5.."}[5m]))) / on() group_left up"#,
        )
        .unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].len(), 3);
        assert_eq!(s[0][0].name(), "__name__");
        assert!(s[0][0].matches_value("req_bucket"));
        assert!(s[0][2].matches_value("503") && !s[0][2].matches_value("200"));
        assert!(s[1][0].matches_value("up"));
        assert!(selectors("sum(").is_err());
        assert!(selectors("1 + 1").unwrap().is_empty());
    }
}
