//! Reading records back for people: filters and a one-line, terminal-safe rendering (`msec audit tail`).

use std::fmt::Write as _;

use serde_json::Value;

use crate::redact::for_terminal;

/// Which records to show.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Filter {
    /// Only records whose actor (subject, API key id, SPIFFE ID or client IP) contains this.
    pub actor: Option<String>,
    /// Only records with this outcome (`allowed`, `denied`, `error`).
    pub outcome: Option<String>,
    /// Only records with this reason code (the outcome's, or any decision's).
    pub code: Option<String>,
    /// Only records of this kind (`request`, `data_access`, `alert`, `gap`, `checkpoint`).
    pub kind: Option<String>,
}

impl Filter {
    /// Sets the actor filter.
    #[must_use]
    pub fn actor(mut self, a: impl Into<String>) -> Self {
        self.actor = Some(a.into());
        self
    }
    /// Sets the outcome filter.
    #[must_use]
    pub fn outcome(mut self, o: impl Into<String>) -> Self {
        self.outcome = Some(o.into());
        self
    }
    /// Sets the code filter.
    #[must_use]
    pub fn code(mut self, c: impl Into<String>) -> Self {
        self.code = Some(c.into());
        self
    }
    /// Sets the kind filter.
    #[must_use]
    pub fn kind(mut self, k: impl Into<String>) -> Self {
        self.kind = Some(k.into());
        self
    }

    /// True when the record passes.
    pub fn matches(&self, v: &Value) -> bool {
        let s = |p: &str| v.pointer(p).and_then(Value::as_str);
        if let Some(k) = &self.kind
            && s("/kind") != Some(k.as_str())
        {
            return false;
        }
        if let Some(o) = &self.outcome
            && s("/outcome/result") != Some(o.as_str())
        {
            return false;
        }
        if let Some(c) = &self.code {
            let in_decisions = v.get("decisions").and_then(Value::as_array).is_some_and(|ds| {
                ds.iter()
                    .any(|d| d.get("code").and_then(Value::as_str) == Some(c.as_str()))
            });
            if s("/outcome/code") != Some(c.as_str()) && !in_decisions {
                return false;
            }
        }
        if let Some(a) = &self.actor {
            let hit = [
                "/actor/subject",
                "/actor/api_key_id",
                "/actor/peer/spiffe_id",
                "/actor/client/ip",
            ]
            .iter()
            .any(|p| s(p).is_some_and(|x| x.contains(a.as_str())));
            if !hit {
                return false;
            }
        }
        true
    }
}

/// One line for a terminal: `seq time kind …`, with every control character, ANSI escape and bidi override
/// made visible, and long values cut.
pub fn render(v: &Value) -> String {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str).unwrap_or("");
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64);
    let mut out = String::new();
    let _ = write!(out, "{:>7} {} {:<11}", n("/seq").unwrap_or(0), s("/time"), s("/kind"));
    match s("/kind") {
        "request" => {
            let route = v
                .pointer("/action/route")
                .and_then(Value::as_str)
                .unwrap_or(s("/action/path"));
            let _ = write!(
                out,
                " {:<7} {} {}",
                s("/outcome/result"),
                s("/action/method"),
                clip(route, 120)
            );
            if let Some(st) = n("/outcome/status") {
                let _ = write!(out, " → {st}");
            }
            if let Some(g) = n("/outcome/grpc_status") {
                let _ = write!(out, " grpc={g}");
            }
            if !s("/outcome/code").is_empty() {
                let _ = write!(out, " {}", s("/outcome/code"));
            }
            actor(&mut out, v);
            if let Some(d) = n("/duration_us") {
                let _ = write!(out, " {d}µs");
            }
        }
        "data_access" => {
            let _ = write!(
                out,
                " {} {}/{}",
                s("/access/operation"),
                clip(s("/access/resource_type"), 64),
                clip(s("/access/resource_id"), 64)
            );
            actor(&mut out, v);
        }
        "alert" => {
            let key = v
                .pointer("/alert/key/value")
                .map(|k| k.as_str().map_or_else(|| k.to_string(), str::to_owned));
            let _ = write!(
                out,
                " {} {}={} count={} in {}s",
                s("/alert/detector"),
                s("/alert/key/type"),
                clip(&key.unwrap_or_default(), 120),
                n("/alert/count").unwrap_or(0),
                n("/alert/window_secs").unwrap_or(0)
            );
        }
        "gap" => {
            let _ = write!(
                out,
                " dropped={} refused={}",
                n("/dropped").unwrap_or(0),
                n("/refused").unwrap_or(0)
            );
        }
        "checkpoint" => {
            let _ = write!(out, " {} log={} key={}", s("/reason"), clip(s("/log"), 64), s("/key"));
        }
        _ => {}
    }
    for_terminal(&out).into_owned()
}

fn actor(out: &mut String, v: &Value) {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let who = s("/actor/subject")
        .map(|x| clip(x, 64))
        .or_else(|| s("/actor/peer/spiffe_id").map(|x| clip(x, 96)))
        .unwrap_or_else(|| "-".into());
    let _ = write!(out, " by {who}");
    if let Some(ip) = s("/actor/client/ip") {
        let _ = write!(out, " from {ip}");
    }
}

fn clip(s: &str, max: usize) -> String {
    crate::util::bounded(s, max)
}
