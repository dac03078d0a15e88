//! The audit log: one JSON line per state-changing call and per denied call.
//!
//! Records are serialised outside the lock, then written with one
//! `write_all` and flushed while the lock is held, so lines never interleave
//! and nothing sits in a user-space buffer. The file sink is opened with
//! `O_APPEND`: after `logrotate`'s `copytruncate` the next record lands at the
//! new end of the file rather than at a stale offset. Schema: `AUDIT-LOG.md`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::auth::Actor;
use crate::config::AuditTarget;

/// How a call ended, from the audit log's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The change was made.
    Success,
    /// The call was refused (401, 403, 404 by tenancy, 429).
    Denied,
    /// The call was admitted but failed (bad input, server error).
    Failure,
}

/// Most bytes of one client-influenced string in a record (ids, names,
/// paths): longer values are cut at a character boundary and end in `…`,
/// so a 60 KB path cannot become a 60 KB record. (`request_id` is bounded
/// to 128 printable ASCII bytes where it is read.)
pub const MAX_AUDIT_FIELD_BYTES: usize = 256;

/// `s`, cut to [`MAX_AUDIT_FIELD_BYTES`] (plus the `…` marker) when longer.
pub fn bounded(s: &str) -> std::borrow::Cow<'_, str> {
    if s.len() <= MAX_AUDIT_FIELD_BYTES {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = MAX_AUDIT_FIELD_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}…", &s[..end]))
}

fn serialize_bounded<S: serde::Serializer>(
    value: &Option<String>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) => serializer.serialize_str(&bounded(v)),
        None => serializer.serialize_none(),
    }
}

/// What a call acted on (`target` in a record). Every field is cut to
/// [`MAX_AUDIT_FIELD_BYTES`] when written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AuditTargetRef {
    /// Function id, when the call names one.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_bounded"
    )]
    pub function_id: Option<String>,
    /// Function name, when known.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_bounded"
    )]
    pub function_name: Option<String>,
    /// Tenant owning the target, when known.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_bounded"
    )]
    pub tenant: Option<String>,
    /// Snapshot name, for snapshot operations.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_bounded"
    )]
    pub snapshot: Option<String>,
    /// Filesystem path, for backups.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_bounded"
    )]
    pub path: Option<String>,
    /// When the function was created, on delete records: the last line of
    /// the log then shows both halves of a create/delete pair.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// One audit record, borrowed from the request that produced it.
#[derive(Debug, Serialize)]
pub struct AuditRecord<'a> {
    /// RFC 3339 UTC time the record was written.
    pub time: String,
    /// Dotted action name, e.g. `function.create`.
    pub action: &'a str,
    /// How it ended.
    pub outcome: Outcome,
    /// HTTP status sent to the caller.
    pub status: u16,
    /// Who called.
    pub actor: &'a Actor,
    /// What was acted on.
    pub target: &'a AuditTargetRef,
    /// Request id (also the `x-request-id` response header).
    pub request_id: &'a str,
    /// The client's address: the TCP peer, or the `X-Forwarded-For` entry a
    /// trusted proxy vouches for.
    pub client: Option<std::net::IpAddr>,
    /// W3C trace id, when the request is traced.
    pub trace_id: Option<&'a str>,
    /// HTTP method.
    pub method: &'a str,
    /// Matched route template.
    pub route: &'a str,
    /// Error code for refused or failed calls.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
}

enum Sink {
    Stdout,
    File {
        file: File,
        /// The last write failed partway: start the next on a fresh line,
        /// so the half line does not swallow the next record.
        torn: bool,
    },
}

/// The audit sink shared by all requests.
pub struct AuditLog {
    sink: Mutex<Sink>,
    /// False from a failed write until the next write succeeds.
    healthy: AtomicBool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditLog")
    }
}

impl AuditLog {
    /// Opens the sink (creating the file, mode 0640, if needed).
    pub fn open(target: &AuditTarget) -> std::io::Result<Self> {
        let sink = match target {
            AuditTarget::Stdout => Sink::Stdout,
            AuditTarget::File(path) => Sink::File {
                file: open_append(path)?,
                torn: false,
            },
        };
        Ok(Self {
            sink: Mutex::new(sink),
            healthy: AtomicBool::new(true),
        })
    }

    /// Current time in the record format.
    pub fn now() -> String {
        OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }

    /// Writes one record. A failed write marks the sink unhealthy (until a
    /// later write succeeds) and puts the record in the error log instead,
    /// so it is not lost; the caller counts it.
    pub fn write(&self, record: &AuditRecord<'_>) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut sink = match self.sink.lock() {
            Ok(s) => s,
            // A panic while holding the lock cannot leave a half-written line
            // that matters more than losing the log; keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = match &mut *sink {
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Sink::File { file, torn } => {
                let prefix: &[u8] = if *torn { b"\n" } else { b"" };
                let result = file
                    .write_all(prefix)
                    .and_then(|()| file.write_all(&line))
                    .and_then(|()| file.flush());
                *torn = result.is_err();
                result
            }
        };
        // Under the lock: a later success must not overwrite a newer failure.
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        drop(sink);
        if let Err(err) = &result {
            tracing::error!(
                %err,
                record = %String::from_utf8_lossy(&line[..line.len() - 1]),
                "cannot write audit record; it is logged here instead"
            );
        }
        result
    }

    /// False when the last write failed.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Flushes and (for the file sink) syncs to disk; called on shutdown.
    pub fn flush(&self) {
        let mut sink = match self.sink.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let result = match &mut *sink {
            Sink::Stdout => std::io::stdout().lock().flush(),
            Sink::File { file, .. } => file.flush().and_then(|()| file.sync_data()),
        };
        if let Err(err) = result {
            tracing::error!(%err, "cannot flush audit log");
        }
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let mut opts = OpenOptions::new();
    opts.append(true).create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o640);
    }
    opts.open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Scope, ScopeKind};

    fn dev_actor() -> Actor {
        Actor {
            scope: Scope {
                kind: ScopeKind::Dev,
            },
            tenant: None,
            token_id: None,
            token_index: None,
        }
    }

    fn create_record<'a>(actor: &'a Actor, target: &'a AuditTargetRef) -> AuditRecord<'a> {
        AuditRecord {
            time: AuditLog::now(),
            action: "function.create",
            outcome: Outcome::Success,
            status: 201,
            actor,
            target,
            request_id: "r1",
            client: None,
            trace_id: None,
            method: "POST",
            route: "/functions",
            error: None,
        }
    }

    #[test]
    fn file_sink_appends_one_json_line_per_record_after_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&AuditTarget::File(path.clone())).unwrap();
        let actor = dev_actor();
        let target = AuditTargetRef {
            function_name: Some("f".into()),
            ..Default::default()
        };
        let rec = create_record(&actor, &target);
        log.write(&rec).unwrap();
        // copytruncate: someone else truncates the file under us.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        log.write(&rec).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 1, "append mode writes at the new end");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["actor"]["scope"]["kind"], "dev");
        assert_eq!(v["target"]["function_name"], "f");
    }

    #[test]
    fn long_values_are_cut_at_a_char_boundary() {
        let short = "fn_1";
        assert_eq!(bounded(short), short);
        let long = "é".repeat(1000);
        let cut = bounded(&long);
        assert!(cut.len() <= MAX_AUDIT_FIELD_BYTES + '…'.len_utf8());
        assert!(cut.ends_with('…'));
        let target = AuditTargetRef {
            function_id: Some("x".repeat(60_000)),
            ..Default::default()
        };
        let json = serde_json::to_string(&target).unwrap();
        assert!(json.len() < 400, "{}", json.len());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_failed_write_is_returned_and_marks_the_sink_unhealthy() {
        let log = AuditLog::open(&AuditTarget::File("/dev/full".into())).unwrap();
        let actor = dev_actor();
        let target = AuditTargetRef::default();
        let rec = create_record(&actor, &target);
        assert!(log.healthy());
        assert!(log.write(&rec).is_err());
        assert!(!log.healthy());
    }
}
