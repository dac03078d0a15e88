//! Bearer tokens, scopes and tenancy.
//!
//! `TENSOR_WASM_API_TOKENS` is a comma-separated list of `TOKEN:tenant=ID`
//! entries (`tenant=*` is an admin over every tenant), parsed once at
//! start-up and never written anywhere. A presented token is hashed with
//! BLAKE3 and compared in constant time against the digest of *every*
//! configured token, so neither the position of a match nor a token's length
//! shows in the timing. An empty list is dev mode: every request is admitted
//! with scope kind `dev`.

use std::net::IpAddr;
use std::sync::Arc;

use serde::Serialize;
use siphasher::sip::SipHasher24;
use std::hash::Hasher;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Tenant functions go to when an admin (or dev-mode caller) names none.
pub const DEFAULT_TENANT: &str = "default";

/// What a token may do.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenScope {
    /// `tenant=*`: every tenant's functions, admin routes.
    Admin,
    /// `tenant=ID`: only that tenant's functions.
    Tenant(String),
}

#[derive(Clone)]
struct TokenEntry {
    token: String,
    scope: TokenScope,
}

/// The parsed token allow-list. Its `Debug` output shows only the number of
/// entries and their scopes, never a token.
#[derive(Clone, Default)]
pub struct TokenList {
    entries: Vec<TokenEntry>,
}

impl std::fmt::Debug for TokenList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scopes: Vec<String> = self
            .entries
            .iter()
            .map(|e| match &e.scope {
                TokenScope::Admin => "<redacted>:tenant=*".to_owned(),
                TokenScope::Tenant(t) => format!("<redacted>:tenant={t}"),
            })
            .collect();
        f.debug_struct("TokenList")
            .field("entries", &scopes)
            .finish()
    }
}

/// A malformed `TENSOR_WASM_API_TOKENS` entry. Names the entry by its
/// 1-based position; the token text is never included.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "TENSOR_WASM_API_TOKENS entry {index} is invalid: {reason} \
     (expected comma-separated `TOKEN:tenant=ID` entries, `tenant=*` for admins)"
)]
pub struct TokenParseError {
    /// 1-based position of the bad entry.
    pub index: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Shortest accepted token: a guessable token is a hole the audit log only
/// records afterwards. (`openssl rand -base64 48 | tr -d '/=+'` gives ~62.)
pub const MIN_TOKEN_LEN: usize = 16;

/// The token `share/env.example` and `docker-compose.yml` ship with. A
/// server handed it refuses to start: copying the example must never give
/// a deployment a token everyone can read in our repository.
pub const PLACEHOLDER_TOKEN: &str = "REPLACE-ME-with-openssl-rand-base64-48";

impl TokenList {
    /// Parses the variable's value; an empty (or all-blank) value is dev mode.
    pub fn parse(raw: &str) -> Result<Self, TokenParseError> {
        if raw.trim().is_empty() {
            return Ok(Self::default());
        }
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (i, entry) in raw.split(',').enumerate() {
            let index = i + 1;
            let err = |reason| TokenParseError { index, reason };
            let entry = entry.trim();
            if entry.is_empty() {
                return Err(err("empty entry"));
            }
            let (token, scope) = entry
                .rsplit_once(':')
                .ok_or_else(|| err("missing `:tenant=ID`"))?;
            let tenant = scope
                .strip_prefix("tenant=")
                .ok_or_else(|| err("scope must be `tenant=ID` or `tenant=*`"))?;
            if token.is_empty() {
                return Err(err("empty token"));
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(err("token contains whitespace or control characters"));
            }
            if token.eq_ignore_ascii_case(PLACEHOLDER_TOKEN) {
                return Err(err(
                    "token is the placeholder from share/env.example; generate one with \
                     `openssl rand -base64 48 | tr -d '/=+'`",
                ));
            }
            if token.len() < MIN_TOKEN_LEN {
                return Err(err(
                    "token is shorter than 16 characters; generate one with \
                     `openssl rand -base64 48 | tr -d '/=+'`",
                ));
            }
            let scope = if tenant == "*" {
                TokenScope::Admin
            } else if is_valid_tenant(tenant) {
                TokenScope::Tenant(tenant.to_owned())
            } else {
                return Err(err(
                    "tenant id must be 1-64 characters of [A-Za-z0-9._-], or `*`",
                ));
            };
            if entries.iter().any(|e| e.token == token) {
                return Err(err("duplicate token"));
            }
            entries.push(TokenEntry {
                token: token.to_owned(),
                scope,
            });
        }
        Ok(Self { entries })
    }

    /// True when no token is configured (dev mode).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of configured tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Whether `s` is acceptable as a tenant id.
pub fn is_valid_tenant(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// The kind of scope a caller acts under (audit `actor.scope.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeKind {
    /// A `tenant=*` token.
    Admin,
    /// A `tenant=ID` token.
    Tenant,
    /// Dev mode: no tokens configured, everything admitted.
    Dev,
    /// No valid token (only seen on `401` audit records).
    Anonymous,
}

/// `actor.scope` in audit records.
#[derive(Debug, Clone, Serialize)]
pub struct Scope {
    /// Scope kind.
    pub kind: ScopeKind,
}

/// Who is calling: attached to every authenticated request.
#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    /// The scope the caller acts under.
    pub scope: Scope,
    /// The caller's tenant (`*` for admins, `null` in dev mode).
    pub tenant: Option<String>,
    /// Keyed SipHash of the token (see `AUDIT-LOG.md` §4.3); `null` in dev mode.
    pub token_id: Option<String>,
    /// Rate-limit bucket of a configured token.
    #[serde(skip)]
    pub(crate) token_index: Option<usize>,
}

impl Actor {
    /// Scope kind shorthand.
    pub fn kind(&self) -> ScopeKind {
        self.scope.kind
    }

    /// Whether the caller may see and change `tenant`'s functions.
    pub fn can_access(&self, tenant: &str) -> bool {
        match self.scope.kind {
            ScopeKind::Admin | ScopeKind::Dev => true,
            ScopeKind::Tenant => self.tenant.as_deref() == Some(tenant),
            ScopeKind::Anonymous => false,
        }
    }

    /// Whether the caller may use admin routes.
    pub fn is_admin(&self) -> bool {
        matches!(self.scope.kind, ScopeKind::Admin | ScopeKind::Dev)
    }

    /// The tenant whose functions a listing shows: `None` = all tenants.
    pub fn list_filter(&self) -> Option<&str> {
        match self.scope.kind {
            ScopeKind::Admin | ScopeKind::Dev => None,
            // An anonymous actor never reaches a handler; an impossible tenant is the safe answer.
            ScopeKind::Tenant | ScopeKind::Anonymous => Some(self.tenant.as_deref().unwrap_or("")),
        }
    }
}

/// Computes `token_id`s: SipHash-2-4 keyed with the first 16 bytes of
/// `audit.key` over the last 16 bytes of the key followed by the token,
/// printed as 16 lower-case hex digits.
#[derive(Clone)]
pub struct TokenIdHasher {
    key: [u8; 32],
}

impl TokenIdHasher {
    /// A hasher over the 32-byte `audit.key`.
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// The `token_id` of `token`.
    pub fn token_id(&self, token: &str) -> String {
        let mut k = [0u8; 16];
        k.copy_from_slice(&self.key[..16]);
        let mut h = SipHasher24::new_with_key(&k);
        h.write(&self.key[16..]);
        h.write(token.as_bytes());
        format!("{:016x}", h.finish())
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone)]
pub(crate) struct AuthFailure {
    /// Anonymous actor for the audit record (with the presented token's id, if any).
    pub actor: Actor,
}

/// Decides who a request is from.
pub(crate) struct Authenticator {
    digests: Vec<[u8; 32]>,
    actors: Vec<Arc<Actor>>,
    dev: Option<Arc<Actor>>,
    ids: TokenIdHasher,
}

impl Authenticator {
    pub(crate) fn new(tokens: &TokenList, ids: TokenIdHasher) -> Self {
        let dev = tokens.is_empty().then(|| {
            Arc::new(Actor {
                scope: Scope {
                    kind: ScopeKind::Dev,
                },
                tenant: None,
                token_id: None,
                token_index: None,
            })
        });
        let digests = tokens
            .entries
            .iter()
            .map(|e| *blake3::hash(e.token.as_bytes()).as_bytes())
            .collect();
        let actors = tokens
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let (kind, tenant) = match &e.scope {
                    TokenScope::Admin => (ScopeKind::Admin, "*".to_owned()),
                    TokenScope::Tenant(t) => (ScopeKind::Tenant, t.clone()),
                };
                Arc::new(Actor {
                    scope: Scope { kind },
                    tenant: Some(tenant),
                    token_id: Some(ids.token_id(&e.token)),
                    token_index: Some(i),
                })
            })
            .collect();
        Self {
            digests,
            actors,
            dev,
            ids,
        }
    }

    pub(crate) fn dev_mode(&self) -> bool {
        self.dev.is_some()
    }

    /// Authenticates the value of an `Authorization` header.
    pub(crate) fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<Actor>, AuthFailure> {
        if let Some(dev) = &self.dev {
            return Ok(dev.clone());
        }
        let token = authorization.and_then(bearer_token);
        let Some(token) = token else {
            return Err(self.failure(None));
        };
        let presented = blake3::hash(token);
        let presented = presented.as_bytes();
        // Visit every entry; remember the match with constant-time selects.
        let mut found = subtle::Choice::from(0);
        let mut index: u64 = 0;
        for (i, digest) in self.digests.iter().enumerate() {
            let eq = presented.ct_eq(digest);
            index.conditional_assign(&(i as u64), eq);
            found |= eq;
        }
        if bool::from(found) {
            // `index` is < digests.len() whenever `found` is set.
            match self.actors.get(index as usize) {
                Some(actor) => Ok(actor.clone()),
                None => Err(self.failure(Some(token))),
            }
        } else {
            Err(self.failure(Some(token)))
        }
    }

    fn failure(&self, token: Option<&[u8]>) -> AuthFailure {
        AuthFailure {
            actor: Actor {
                scope: Scope {
                    kind: ScopeKind::Anonymous,
                },
                tenant: None,
                token_id: token
                    .and_then(|t| std::str::from_utf8(t).ok())
                    .map(|t| self.ids.token_id(t)),
                token_index: None,
            },
        }
    }
}

/// Extracts the token from `Bearer <token>` (scheme case-insensitive).
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = value[7..].trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// Rate-limit bucket of a request: a configured token, or (dev mode) the client address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    Token(usize),
    Client(Option<IpAddr>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_admin_and_tenant_entries() {
        let list = TokenList::parse("abc-0123456789abcdef:tenant=*, def-0123456789abcdef:tenant=7")
            .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.entries[0].scope == TokenScope::Admin);
        assert!(list.entries[1].scope == TokenScope::Tenant("7".into()));
    }

    #[test]
    fn empty_value_is_dev_mode() {
        assert!(TokenList::parse("").unwrap().is_empty());
        assert!(TokenList::parse("  ").unwrap().is_empty());
    }

    #[test]
    fn bad_entry_is_named_by_position_without_the_token() {
        let err =
            TokenList::parse("good-0123456789abcdef:tenant=1,s3cret-token-0123456789:tenant=")
                .unwrap_err();
        assert_eq!(err.index, 2);
        assert!(!err.to_string().contains("s3cret"));
        let err = TokenList::parse("a-0123456789abcdef:tenant=1,,b-0123456789abcdef:tenant=2")
            .unwrap_err();
        assert_eq!(err.index, 2);
        let err = TokenList::parse("s3cret-0123456789abcdef").unwrap_err();
        assert_eq!(err.index, 1);
        assert!(!err.to_string().contains("s3cret"));
        let err = TokenList::parse("x-0123456789abcdef:tenant=1,x-0123456789abcdef:tenant=2")
            .unwrap_err();
        assert_eq!(err.reason, "duplicate token");
    }

    #[test]
    fn debug_output_never_contains_tokens() {
        let list = TokenList::parse("topsecret-0123456789:tenant=*").unwrap();
        assert!(!format!("{list:?}").contains("topsecret"));
    }

    #[test]
    fn short_and_placeholder_tokens_are_refused_by_position() {
        let err = TokenList::parse("long-enough-token-0123:tenant=*,short:tenant=7").unwrap_err();
        assert_eq!(err.index, 2);
        assert!(err.to_string().contains("shorter than 16"), "{err}");
        assert!(!err.to_string().contains("short:"), "{err}");
        let err = TokenList::parse(&format!("{PLACEHOLDER_TOKEN}:tenant=*")).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("placeholder"), "{err}");
        assert!(
            TokenList::parse("0123456789abcdef:tenant=*").is_ok(),
            "16 is enough"
        );
    }

    #[test]
    fn authenticates_every_configured_token_and_rejects_others() {
        let list = TokenList::parse("aaa-0123456789abcdef:tenant=*,bbb-0123456789abcdef:tenant=7,ccc-0123456789abcdef:tenant=8").unwrap();
        let auth = Authenticator::new(&list, TokenIdHasher::new([7; 32]));
        let a = auth
            .authenticate(Some(b"Bearer bbb-0123456789abcdef"))
            .unwrap();
        assert_eq!(a.kind(), ScopeKind::Tenant);
        assert_eq!(a.tenant.as_deref(), Some("7"));
        assert_eq!(
            auth.authenticate(Some(b"bearer ccc-0123456789abcdef"))
                .unwrap()
                .tenant
                .as_deref(),
            Some("8")
        );
        assert_eq!(
            auth.authenticate(Some(b"Bearer aaa-0123456789abcdef"))
                .unwrap()
                .kind(),
            ScopeKind::Admin
        );
        assert!(
            auth.authenticate(Some(b"Bearer bbb-0123456789abcde"))
                .is_err()
        );
        assert!(
            auth.authenticate(Some(b"Basic bbb-0123456789abcdef"))
                .is_err()
        );
        assert!(auth.authenticate(None).is_err());
    }

    #[test]
    fn token_id_is_keyed_and_stable() {
        let a = TokenIdHasher::new([1; 32]);
        let b = TokenIdHasher::new([2; 32]);
        assert_eq!(a.token_id("t"), a.token_id("t"));
        assert_ne!(a.token_id("t"), b.token_id("t"));
        assert_eq!(a.token_id("t").len(), 16);
    }
}
