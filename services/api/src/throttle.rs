//! How long to hold back the answer to a failed authentication (pure: the caller passes
//! the time). Per client IP a leaky count of failures: the first few within a window go
//! unslowed, each further one waits twice as long as the one before, up to a cap. The
//! count leaks away with time and only with time: a success from the same IP does not
//! reset it. At most a bounded number of IPs are remembered.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// When and how much to slow failed authentications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottlePolicy {
    /// Failures an IP may make within `window` without being slowed.
    pub free: u32,
    /// The window of the free failures: one failure is forgiven every `window / free`.
    pub window: Duration,
    /// The delay of the first failure beyond the free ones; each further one doubles it.
    pub first_delay: Duration,
    /// The longest delay.
    pub max_delay: Duration,
    /// How many IPs are remembered at most.
    pub capacity: usize,
}

impl Default for ThrottlePolicy {
    /// 5 free failures in 10 minutes, then 250 ms doubling up to 5 s; 10,000 IPs.
    fn default() -> Self {
        Self {
            free: 5,
            window: Duration::from_secs(600),
            first_delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(5),
            capacity: 10_000,
        }
    }
}

impl ThrottlePolicy {
    /// How long it takes to forgive one failure.
    fn leak(&self) -> Duration {
        (self.window / self.free.max(1)).max(Duration::from_nanos(1))
    }

    /// The delay for the `count`th failure that still counts.
    pub fn delay(&self, count: u32) -> Duration {
        match count.checked_sub(self.free.saturating_add(1)) {
            None => Duration::ZERO,
            Some(doublings) => self
                .first_delay
                .saturating_mul(1 << doublings.min(31))
                .min(self.max_delay),
        }
    }

    /// The count at which the delay reaches its cap: counting further would only make a
    /// client that stopped wait longer to be forgiven, not slow it more.
    fn ceiling(&self) -> u32 {
        let last = self.free.saturating_add(32);
        (self.free.saturating_add(1)..=last)
            .find(|&count| self.delay(count) >= self.max_delay)
            .unwrap_or(last)
    }
}

/// The failures of every remembered IP.
#[derive(Debug, Clone)]
pub struct Throttle {
    policy: ThrottlePolicy,
    /// For each IP, when its count will have leaked away entirely.
    clear_at: HashMap<IpAddr, Instant>,
}

impl Throttle {
    pub fn new(policy: ThrottlePolicy) -> Self {
        Self {
            policy,
            clear_at: HashMap::new(),
        }
    }

    /// Records a failed authentication from `ip` at `now`; the delay before answering it.
    pub fn failed(&mut self, ip: IpAddr, now: Instant) -> Duration {
        let ip = ip.to_canonical();
        if !self.clear_at.contains_key(&ip) {
            self.make_room(now);
        }
        let leak = self.policy.leak();
        let count = self.failures(ip, now).saturating_add(1);
        let count = count.min(self.policy.ceiling());
        let until = now.checked_add(leak.saturating_mul(count)).unwrap_or(now);
        self.clear_at.insert(ip, until);
        self.policy.delay(count)
    }

    /// How many failures of `ip` still count at `now`.
    pub fn failures(&self, ip: IpAddr, now: Instant) -> u32 {
        let Some(until) = self.clear_at.get(&ip.to_canonical()) else {
            return 0;
        };
        let left = until.saturating_duration_since(now).as_nanos();
        let count = left.div_ceil(self.policy.leak().as_nanos());
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// How many IPs are remembered.
    pub fn remembered(&self) -> usize {
        self.clear_at.len()
    }

    /// Makes room for one more IP: forgets those with nothing left to count, then, if
    /// still full, the one nearest to being forgiven.
    fn make_room(&mut self, now: Instant) {
        let capacity = self.policy.capacity.max(1);
        if self.clear_at.len() < capacity {
            return;
        }
        self.clear_at.retain(|_, until| *until > now);
        while self.clear_at.len() >= capacity {
            let nearest = self.clear_at.iter().min_by_key(|(_, until)| **until);
            let Some((&ip, _)) = nearest else { break };
            self.clear_at.remove(&ip);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// The delays of `n` failures from `ip`, all at `now`.
    fn burst(throttle: &mut Throttle, ip: IpAddr, now: Instant, n: usize) -> Vec<Duration> {
        (0..n).map(|_| throttle.failed(ip, now)).collect()
    }

    #[test]
    fn the_first_five_failures_are_free_then_delays_double_up_to_the_cap() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let delays = burst(&mut throttle, ip(1), Instant::now(), 13);
        let zero = Duration::ZERO;
        let secs = Duration::from_secs;
        assert_eq!(
            delays,
            [
                zero,
                zero,
                zero,
                zero,
                zero,
                ms(250),
                ms(500),
                secs(1),
                secs(2),
                secs(4),
                secs(5),
                secs(5),
                secs(5),
            ]
        );
    }

    #[test]
    fn ips_are_counted_apart() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let now = Instant::now();
        burst(&mut throttle, ip(1), now, 8);
        assert_eq!(throttle.failed(ip(2), now), Duration::ZERO);
        assert_eq!(throttle.failures(ip(2), now), 1);
        assert_eq!(throttle.failures(ip(1), now), 8);
        assert_eq!(throttle.failures(ip(3), now), 0);
    }

    #[test]
    fn an_ipv4_client_is_one_client_whether_or_not_mapped_into_ipv6() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let now = Instant::now();
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        burst(&mut throttle, ip(1), now, 3);
        burst(&mut throttle, mapped, now, 3);
        assert_eq!(throttle.failures(ip(1), now), 6);
        assert_eq!(throttle.remembered(), 1);
        let other = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(throttle.failed(other, now), Duration::ZERO);
    }

    #[test]
    fn one_failure_is_forgiven_every_two_minutes() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let start = Instant::now();
        burst(&mut throttle, ip(1), start, 5);
        assert_eq!(throttle.failures(ip(1), start + ms(119_999)), 5);
        let later = start + Duration::from_secs(120);
        assert_eq!(throttle.failures(ip(1), later), 4);
        // So the next failure two minutes on is the fifth again: free.
        assert_eq!(throttle.failed(ip(1), later), Duration::ZERO);
        assert_eq!(throttle.failed(ip(1), later), ms(250));
    }

    #[test]
    fn after_five_quick_failures_one_every_two_minutes_is_never_slowed() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let start = Instant::now();
        burst(&mut throttle, ip(1), start, 5);
        for minute in (2..60).step_by(2) {
            let at = start + Duration::from_secs(60 * minute);
            assert_eq!(throttle.failed(ip(1), at), Duration::ZERO, "{minute}");
        }
    }

    #[test]
    fn the_count_leaks_away_entirely() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let start = Instant::now();
        burst(&mut throttle, ip(1), start, 7);
        let much_later = start + Duration::from_secs(3600);
        assert_eq!(throttle.failures(ip(1), much_later), 0);
        assert_eq!(throttle.failed(ip(1), much_later), Duration::ZERO);
    }

    #[test]
    fn a_long_attack_is_forgiven_as_soon_as_a_short_one_at_the_cap() {
        let mut throttle = Throttle::new(ThrottlePolicy::default());
        let start = Instant::now();
        burst(&mut throttle, ip(1), start, 10_000);
        // The count stops where the delay reaches its cap (5 free + 6 doublings).
        assert_eq!(throttle.failures(ip(1), start), 11);
        assert_eq!(throttle.failed(ip(1), start), Duration::from_secs(5));
        let later = start + Duration::from_secs(22 * 60);
        assert_eq!(throttle.failures(ip(1), later), 0);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_nearest_forgiven_first() {
        let policy = ThrottlePolicy {
            capacity: 3,
            ..ThrottlePolicy::default()
        };
        let mut throttle = Throttle::new(policy);
        let now = Instant::now();
        burst(&mut throttle, ip(1), now, 3);
        burst(&mut throttle, ip(2), now, 1);
        burst(&mut throttle, ip(3), now, 2);
        throttle.failed(ip(4), now);
        assert_eq!(throttle.remembered(), 3);
        assert_eq!(throttle.failures(ip(2), now), 0, "forgotten");
        assert_eq!(throttle.failures(ip(1), now), 3);
        assert_eq!(throttle.failures(ip(3), now), 2);
        assert_eq!(throttle.failures(ip(4), now), 1);
    }

    #[test]
    fn a_full_table_forgets_every_ip_with_nothing_left_at_once() {
        let policy = ThrottlePolicy {
            capacity: 3,
            ..ThrottlePolicy::default()
        };
        let mut throttle = Throttle::new(policy);
        let start = Instant::now();
        burst(&mut throttle, ip(1), start, 1);
        burst(&mut throttle, ip(2), start, 1);
        let later = start + Duration::from_secs(300);
        burst(&mut throttle, ip(3), later, 1);
        burst(&mut throttle, ip(4), later, 1);
        assert_eq!(throttle.remembered(), 2);
        assert_eq!(throttle.failures(ip(3), later), 1);
        assert_eq!(throttle.failures(ip(4), later), 1);
    }

    #[test]
    fn many_ips_never_grow_the_table_past_its_capacity() {
        let policy = ThrottlePolicy {
            capacity: 100,
            ..ThrottlePolicy::default()
        };
        let mut throttle = Throttle::new(policy);
        let now = Instant::now();
        for n in 0..1_000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n));
            assert_eq!(throttle.failed(ip, now), Duration::ZERO);
            assert!(throttle.remembered() <= 100);
        }
    }

    #[test]
    fn delays_follow_the_policy() {
        let policy = ThrottlePolicy {
            free: 0,
            first_delay: ms(100),
            max_delay: ms(350),
            ..ThrottlePolicy::default()
        };
        let delays: Vec<Duration> = (0..5).map(|count| policy.delay(count)).collect();
        assert_eq!(delays, [Duration::ZERO, ms(100), ms(200), ms(350), ms(350)]);
        assert_eq!(ThrottlePolicy::default().delay(u32::MAX), ms(5_000));
    }
}
