//! What one connection may cost the node before it has shown who it is (PRODUCT.md §4, issue
//! 12 item 4). Every connection holds a [`Permit`] from accept until it authenticates (an agent
//! link admitted, the peer recognised) or closes; an admin (HTTP) connection holds one for its
//! whole life, which the idle and header timeouts keep short. Permits are limited per source
//! address and in total; addresses that agents or the peer have connected from before are not
//! held to the total, so a crowd of strangers cannot lock out the site's own nodes.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long a new connection may take over its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Unauthenticated connections one unknown address may hold at once (a known one, where agents
/// or the peer connected from, up to the total: many agents may share one NAT address).
pub const PER_ADDRESS: usize = 128;
/// Unauthenticated connections all strangers together may hold at once (lowered to fit the
/// open-file limit, see [`global_limit`]).
pub const GLOBAL: usize = 1024;
/// How many addresses are remembered as the site's own (agents, the peer).
const KNOWN_MAX: usize = 100_000;
/// At most one warning about refused connections in this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The total for strangers given the open-file limit: at most a quarter of the descriptors, so
/// the store, the agents' links, the peer polls and the admin API always have room.
pub fn global_limit(nofile: u64) -> usize {
    let quarter = usize::try_from(nofile / 4).unwrap_or(usize::MAX);
    GLOBAL.min(quarter).max(PER_ADDRESS)
}

/// Raises the soft open-file limit to the hard one; returns the limit now in force.
pub fn raise_nofile() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!("could not raise the open-file limit: {e}");
            #[cfg(unix)]
            let soft = rlimit::getrlimit(rlimit::Resource::NOFILE)
                .map(|(soft, _)| soft)
                .unwrap_or(1024);
            // Windows counts sockets apart from C runtime files: 1024 is a safe assumption.
            #[cfg(not(unix))]
            let soft = 1024;
            soft
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    PerAddress,
    Global,
}

pub struct ConnLimits {
    per_address: usize,
    global: usize,
    inner: Mutex<Inner>,
    /// Enrollment attempts per address.
    pub enroll: EnrollAttempts,
    /// Wrong enrollment tokens presented since the node started.
    pub bad_tokens: std::sync::atomic::AtomicU64,
}

#[derive(Default)]
struct Inner {
    /// Permits held by strangers (addresses not in `known`).
    strangers: usize,
    by_address: HashMap<IpAddr, usize>,
    known: HashSet<IpAddr>,
    refused: u64,
    warned: Option<Instant>,
}

impl ConnLimits {
    pub fn new(per_address: usize, global: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            per_address,
            global,
            inner: Mutex::new(Inner::default()),
            enroll: EnrollAttempts::default(),
            bad_tokens: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A permit for a new connection from `ip`, or why there is none.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<Permit, Refusal> {
        let mut inner = self.lock();
        let held = inner.by_address.get(&ip).copied().unwrap_or(0);
        let stranger = !inner.known.contains(&ip);
        let per_address = if stranger {
            self.per_address
        } else {
            self.global
        };
        let refusal = if held >= per_address {
            Some(Refusal::PerAddress)
        } else if stranger && inner.strangers >= self.global {
            Some(Refusal::Global)
        } else {
            None
        };
        if let Some(refusal) = refusal {
            inner.refused += 1;
            if inner
                .warned
                .is_none_or(|w| now.duration_since(w) >= WARN_EVERY)
            {
                let refused = std::mem::take(&mut inner.refused);
                inner.warned = Some(now);
                let (what, limit) = match refusal {
                    Refusal::PerAddress => ("from one address", self.per_address),
                    Refusal::Global => ("from unknown addresses in all", self.global),
                };
                tracing::warn!(
                    %ip,
                    "refused {refused} connection(s): more than {limit} unauthenticated connections {what}"
                );
            }
            return Err(refusal);
        }
        *inner.by_address.entry(ip).or_insert(0) += 1;
        if stranger {
            inner.strangers += 1;
        }
        Ok(Permit {
            limits: self.clone(),
            ip,
            stranger,
        })
    }

    /// `ip` is where an authenticated agent or the peer connected from.
    pub fn mark_known(&self, ip: IpAddr) {
        let mut inner = self.lock();
        if inner.known.len() < KNOWN_MAX {
            inner.known.insert(ip);
        }
    }

    /// Unauthenticated connections held now: (from strangers, from `ip`).
    pub fn held(&self, ip: IpAddr) -> (usize, usize) {
        let inner = self.lock();
        (
            inner.strangers,
            inner.by_address.get(&ip).copied().unwrap_or(0),
        )
    }
}

/// One unauthenticated connection's place; given back when dropped.
pub struct Permit {
    limits: Arc<ConnLimits>,
    ip: IpAddr,
    stranger: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut inner = self.limits.lock();
        if let Some(n) = inner.by_address.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                inner.by_address.remove(&self.ip);
            }
        }
        if self.stranger {
            inner.strangers = inner.strangers.saturating_sub(1);
        }
    }
}

/// Enrollment attempts (a Hello from an unknown agent without a valid token, or with a wrong
/// token) one address may make in a burst, then one per [`ENROLL_EVERY`] (issue 12 item 5).
pub const ENROLL_BURST: u32 = 10;
pub const ENROLL_EVERY: Duration = Duration::from_secs(6);
/// How many addresses' attempts are remembered; past it, the quiet ones are forgotten.
const ENROLL_ADDRESSES: usize = 10_000;

/// A token bucket per address for enrollment attempts.
#[derive(Default)]
pub struct EnrollAttempts {
    inner: Mutex<HashMap<IpAddr, (f64, Instant)>>,
}

impl EnrollAttempts {
    /// Takes one attempt from `ip`'s bucket, or says how long until the next one is allowed.
    pub fn take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let burst = f64::from(ENROLL_BURST);
        let per_sec = 1.0 / ENROLL_EVERY.as_secs_f64();
        if map.len() >= ENROLL_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
            });
        }
        let (tokens, at) = map.entry(ip).or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / per_sec))
        }
    }
}

/// When an admin connection last moved bytes, and whether a request is being answered.
#[derive(Clone)]
pub(crate) struct Activity(Arc<std::sync::Mutex<(tokio::time::Instant, usize)>>);

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity(Arc::new(std::sync::Mutex::new((
            tokio::time::Instant::now(),
            0,
        ))))
    }
    fn lock(&self) -> std::sync::MutexGuard<'_, (tokio::time::Instant, usize)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn touch(&self) {
        self.lock().0 = tokio::time::Instant::now();
    }
    /// Zero while a request is being answered (however long that takes).
    pub(crate) fn idle_for(&self) -> Duration {
        let (last, requests) = *self.lock();
        if requests > 0 {
            Duration::ZERO
        } else {
            last.elapsed()
        }
    }
    pub(crate) fn request(&self) -> InRequest {
        let mut g = self.lock();
        g.0 = tokio::time::Instant::now();
        g.1 += 1;
        InRequest(self.clone())
    }
}

pub(crate) struct InRequest(Activity);

impl Drop for InRequest {
    fn drop(&mut self) {
        let mut g = self.0.lock();
        g.0 = tokio::time::Instant::now();
        g.1 = g.1.saturating_sub(1);
    }
}

/// The connection's stream, noting when bytes move.
pub(crate) struct Tracked<S> {
    inner: S,
    activity: Activity,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, activity: Activity) -> Tracked<S> {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn per_address_and_global_limits_leave_room_for_known_addresses() {
        let limits = ConnLimits::new(2, 3);
        let now = Instant::now();
        let a1 = limits.acquire(ip("10.0.0.1"), now).expect("first");
        let _a2 = limits.acquire(ip("10.0.0.1"), now).expect("second");
        assert_eq!(
            limits.acquire(ip("10.0.0.1"), now).err(),
            Some(Refusal::PerAddress)
        );
        let _b1 = limits
            .acquire(ip("10.0.0.2"), now)
            .expect("another address");
        assert_eq!(
            limits.acquire(ip("10.0.0.3"), now).err(),
            Some(Refusal::Global)
        );
        // An agent's address is not held to the strangers' total, and may hold more.
        limits.mark_known(ip("10.0.0.9"));
        let _k: Vec<Permit> = (0..3)
            .map(|_| limits.acquire(ip("10.0.0.9"), now).expect("known address"))
            .collect();
        assert_eq!(limits.held(ip("10.0.0.9")), (3, 3));
        assert_eq!(
            limits.acquire(ip("10.0.0.9"), now).err(),
            Some(Refusal::PerAddress)
        );
        drop(a1);
        let _a3 = limits.acquire(ip("10.0.0.3"), now).expect("room again");
        assert_eq!(limits.held(ip("10.0.0.1")), (3, 1));
    }

    #[test]
    fn enrollment_attempts_are_a_burst_then_a_trickle_per_address() {
        let attempts = EnrollAttempts::default();
        let now = Instant::now();
        for _ in 0..ENROLL_BURST {
            attempts
                .take(ip("10.0.0.1"), now)
                .expect("within the burst");
        }
        let wait = attempts.take(ip("10.0.0.1"), now).expect_err("burst spent");
        assert!(wait > Duration::ZERO && wait <= ENROLL_EVERY, "{wait:?}");
        attempts.take(ip("10.0.0.2"), now).expect("another address");
        attempts
            .take(ip("10.0.0.1"), now + ENROLL_EVERY)
            .expect("one more after the interval");
    }

    #[test]
    fn the_total_fits_the_open_file_limit() {
        assert_eq!(global_limit(1024), 256);
        assert_eq!(global_limit(1 << 20), GLOBAL);
        assert_eq!(global_limit(16), PER_ADDRESS);
    }
}
