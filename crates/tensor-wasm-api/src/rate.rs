//! Rate limits: a token bucket per configured token (or per client address
//! in dev mode), and a budget of failed authentications per client address.
//! No dependency on the gateway's state: [`crate::state`] holds them,
//! [`crate::guard`] spends them.

use std::net::IpAddr;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};

use crate::auth::RateKey;
use crate::config::RateLimitConfig;

/// Token buckets: one per configured token, or per client address in dev mode.
pub(crate) enum RateLimits {
    Off,
    On {
        per_token: Vec<DefaultDirectRateLimiter>,
        per_client: DefaultKeyedRateLimiter<Option<IpAddr>>,
        clock: DefaultClock,
    },
}

impl RateLimits {
    pub(crate) fn new(cfg: Option<RateLimitConfig>, tokens: usize) -> Self {
        let Some(cfg) = cfg else {
            return Self::Off;
        };
        let quota = Quota::per_second(cfg.rps).allow_burst(cfg.burst);
        Self::On {
            per_token: (0..tokens)
                .map(|_| DefaultDirectRateLimiter::direct(quota))
                .collect(),
            per_client: DefaultKeyedRateLimiter::keyed(quota),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when the bucket is empty.
    pub(crate) fn check(&self, key: RateKey) -> Result<(), u64> {
        let Self::On {
            per_token,
            per_client,
            clock,
        } = self
        else {
            return Ok(());
        };
        let verdict = match key {
            RateKey::Token(i) => match per_token.get(i) {
                Some(l) => l.check(),
                None => return Ok(()),
            },
            RateKey::Client(ip) => per_client.check_key(&ip),
        };
        verdict.map_err(|not_until| retry_after(not_until.wait_time_from(clock.now())))
    }

    /// Forgets idle per-client buckets (dev mode keys by address).
    pub(crate) fn shrink(&self) {
        if let Self::On { per_client, .. } = self {
            per_client.retain_recent();
            per_client.shrink_to_fit();
        }
    }
}

/// A token bucket per client address, spent only by failed
/// authentications: a `401` flood from one address is answered `429`
/// without a token check's audit record once its budget is gone.
pub(crate) struct UnauthenticatedLimit {
    limiter: Option<DefaultKeyedRateLimiter<Option<IpAddr>>>,
    clock: DefaultClock,
}

impl UnauthenticatedLimit {
    pub(crate) fn new(cfg: Option<RateLimitConfig>) -> Self {
        Self {
            limiter: cfg.map(|cfg| {
                DefaultKeyedRateLimiter::keyed(Quota::per_second(cfg.rps).allow_burst(cfg.burst))
            }),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(seconds to wait)` when `client` has spent its budget. IPv6
    /// clients share one budget per /64 (one subscriber's prefix: otherwise
    /// each of its 2^64 addresses would bring a fresh budget).
    pub(crate) fn check(&self, client: Option<IpAddr>) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&client.map(budget_key))
            .map_err(|not_until| retry_after(not_until.wait_time_from(self.clock.now())))
    }

    /// Forgets addresses whose buckets are full again.
    pub(crate) fn shrink(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The address a failed-authentication budget is kept for: IPv4 as is
/// (also when written IPv4-mapped), IPv6 cut to its /64.
pub(crate) fn budget_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// `Retry-After` in whole seconds, never "0".
fn retry_after(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    #[test]
    fn bucket_refuses_past_burst_with_positive_retry_after() {
        let cfg = RateLimitConfig::new(NonZeroU32::new(1).unwrap(), NonZeroU32::new(2));
        let limits = RateLimits::new(Some(cfg), 1);
        assert!(limits.check(RateKey::Token(0)).is_ok());
        assert!(limits.check(RateKey::Token(0)).is_ok());
        let wait = limits.check(RateKey::Token(0)).unwrap_err();
        assert!(wait >= 1);
    }

    #[test]
    fn ipv6_clients_share_a_budget_per_64() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            budget_key(ip("2001:db8:1:2::1")),
            budget_key(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            budget_key(ip("2001:db8:1:2::1")),
            budget_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(budget_key(ip("::ffff:192.0.2.1")), ip("192.0.2.1"));
        assert_eq!(budget_key(ip("192.0.2.1")), ip("192.0.2.1"));
    }
}
