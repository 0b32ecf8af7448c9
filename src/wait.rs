//! How linkbatch waits, in one place: for a server that cannot be reached (`Outages`: one tracker, one
//! probe at a time) and between the attempts of anything worth repeating (`retrying`: one backoff loop,
//! over the retry policy's one iterator). What to do after each answer is `decide`'s; how to wait is here.
//! It sends nothing itself; what a wait means is worded in `told`.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use crate::api::ApiError;
use crate::decide::{Again, Away, Outage};
use crate::stop::Stop;

/// What one attempt came to, for [`Retrying`].
#[derive(Debug)]
pub enum Attempt<T> {
    /// Finished: this is the answer.
    Done(T),
    /// Worth another attempt after the policy's next delay (never shorter than `at_least`, a server's
    /// `Retry-After`); when the attempts have run out, `spent` is the answer.
    Again {
        /// The least wait before the next attempt.
        at_least: Duration,
        /// The answer once no attempt is left.
        spent: T,
    },
    /// Attempt again at once, spending no attempt: the wait was someone else's (an outage's probe).
    Now,
    /// Attempt again after exactly this wait: the caller's own state machine chose it from the policy's
    /// delays (the create loop, whose delays are part of its decision).
    After(Duration),
}

impl<T> Attempt<T> {
    /// A failed idempotent request as `decide::read_again` judges it: `spent` is the answer if it is final or
    /// once the attempts run out.
    pub fn after(again: Again, spent: T) -> Attempt<T> {
        match again {
            Again::Never => Attempt::Done(spent),
            Again::Now => Attempt::Now,
            Again::Backoff { at_least } => Attempt::Again { at_least, spent },
        }
    }
}

/// The one backoff loop's waits: each caller's loop hands it what an attempt came to and goes round again,
/// or ends, as it answers. (A loop in a closure would be shorter to call, but a worker's future must be
/// `Send`, and an async closure's is not provably so on today's compiler.)
#[derive(Debug)]
pub struct Retrying<'s, D> {
    stop: &'s Stop,
    delays: D,
}

/// What the loop does after an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Next<T> {
    /// Attempt again: the wait is over.
    Again,
    /// The loop ends with this answer.
    Done(T),
    /// The stop ended a wait first.
    Stopped,
}

impl<'s, D: Iterator<Item = Duration>> Retrying<'s, D> {
    /// Waits that `stop` can end, between attempts spaced by `delays` (the retry policy's backoff).
    pub fn new(stop: &'s Stop, delays: D) -> Retrying<'s, D> {
        Retrying { stop, delays }
    }

    /// Waits as `attempt` asks; what the loop does next.
    pub async fn after<T>(&mut self, attempt: Attempt<T>) -> Next<T> {
        let wait = match attempt {
            Attempt::Done(value) => return Next::Done(value),
            Attempt::Now => return Next::Again,
            Attempt::After(wait) => wait,
            Attempt::Again { at_least, spent } => match self.delays.next() {
                Some(delay) => delay.max(at_least),
                None => return Next::Done(spent),
            },
        };
        if self.stop.sleep(wait).await { Next::Again } else { Next::Stopped }
    }
}

/// The one outage tracker: whether the server can be reached, and the one probe that may go while it
/// cannot. Every request of a run (and each read before it) passes its gate and tells it what it heard.
#[derive(Debug)]
pub struct Outages {
    state: Mutex<Outage>,
    probe: tokio::sync::Mutex<()>,
}

/// What the gate let through.
#[derive(Debug)]
pub enum Gate<'a> {
    /// Go; the guard is held when this request is the outage's one probe.
    Go(Option<tokio::sync::MutexGuard<'a, ()>>),
    /// The stop came first.
    Stopped,
    /// Away for longer than `[retry] outage`: the reason to stop with.
    GaveUp(String),
}

/// What an answer changed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    /// Nothing new.
    Same,
    /// The server just went away: the reason, and how long the caller waits at most.
    Away { reason: String, limit: Duration },
    /// The server answers again after this long away.
    Back(Duration),
}

impl Outages {
    /// No outage yet; `limit` is `[retry] outage`, `base` and `max` the backoff between probes.
    pub fn new(limit: Duration, base: Duration, max: Duration) -> Outages {
        Outages { state: Mutex::new(Outage::new(limit, base, max)), probe: tokio::sync::Mutex::new(()) }
    }

    fn state(&self) -> MutexGuard<'_, Outage> {
        // A time, a count and a reason: a panic elsewhere cannot leave them half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Before a request: at once while the server answers; while it is away, waits for the probe, backs off
    /// and lets this request go as the one probe.
    pub async fn gate(&self, stop: &Stop) -> Gate<'_> {
        if !self.state().is_away() {
            return Gate::Go(None);
        }
        let guard = tokio::select! {
            guard = self.probe.lock() => guard,
            () = stop.stopped() => return Gate::Stopped,
        };
        let next = self.state().next(SystemTime::now());
        match next {
            Away::Up => Gate::Go(None),
            Away::Probe(wait) if stop.sleep(wait).await => Gate::Go(Some(guard)),
            Away::Probe(_) => Gate::Stopped,
            Away::GiveUp(reason) => Gate::GaveUp(reason),
        }
    }

    /// After a request: what its answer says of the server (away, or back), said once as it changes. A
    /// certificate refused says neither (the run stops for it).
    pub fn hear<T>(&self, answer: &Result<T, ApiError>) {
        let unreachable = match answer {
            Err(ApiError::Unreachable { reason }) => Some(reason.as_str()),
            Err(ApiError::Untrusted { .. }) => return,
            _ => None,
        };
        match self.heard(unreachable) {
            Heard::Away { reason, limit } => crate::told::outage_began(&reason, limit),
            Heard::Back(away) => crate::told::outage_ended(away),
            Heard::Same => {}
        }
    }

    /// `unreachable` is the reason when the server could not be reached, `None` when it answered (whatever
    /// it said).
    fn heard(&self, unreachable: Option<&str>) -> Heard {
        let now = SystemTime::now();
        let mut state = self.state();
        match unreachable {
            Some(reason) if state.away(now, reason) => Heard::Away { reason: reason.to_owned(), limit: state.limit() },
            Some(_) => Heard::Same,
            None => state.back(now).map_or(Heard::Same, Heard::Back),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Goes round the loop with `attempts` (last first), as a caller's loop does.
    async fn go_round<T>(stop: &Stop, delays: Vec<Duration>, mut attempts: Vec<Attempt<T>>) -> (Next<T>, u32) {
        let mut retrying = Retrying::new(stop, delays.into_iter());
        let mut tries = 0;
        loop {
            tries += 1;
            match retrying.after(attempts.pop().expect("an attempt left")).await {
                Next::Again => {}
                end => return (end, tries),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retrying_waits_the_longer_of_delay_and_retry_after_and_ends_with_the_spent_answer() {
        let stop = Stop::default();
        let started = tokio::time::Instant::now();
        let again = || Attempt::Again { at_least: ms(300), spent: "spent" };
        let (end, tries) = go_round(&stop, vec![ms(100), ms(400)], vec![again(), again(), again(), again()]).await;
        assert_eq!((end, tries), (Next::Done("spent"), 3), "the first attempt and one per delay");
        assert_eq!(started.elapsed(), ms(700), "each wait the longer of the two");
    }

    #[tokio::test(start_paused = true)]
    async fn now_spends_no_delay_after_waits_exactly_and_done_ends() {
        let stop = Stop::default();
        let started = tokio::time::Instant::now();
        let attempts = vec![Attempt::Done(7), Attempt::After(ms(250)), Attempt::Now, Attempt::Now];
        let (end, tries) = go_round(&stop, vec![], attempts).await;
        assert_eq!((end, tries, started.elapsed()), (Next::Done(7), 4, ms(250)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stop_ends_the_wait() {
        let stop = Stop::default();
        stop.stop();
        let (end, _) = go_round(&stop, vec![ms(10)], vec![Attempt::Again { at_least: ms(0), spent: 1 }]).await;
        assert_eq!(end, Next::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_said_once_probed_one_at_a_time_and_given_up() {
        let stop = Stop::default();
        let outages = Outages::new(Duration::from_secs(3), Duration::from_secs(1), Duration::from_secs(1));
        assert!(matches!(outages.gate(&stop).await, Gate::Go(None)));
        assert_eq!(
            outages.heard(Some("refused")),
            Heard::Away { reason: "refused".into(), limit: Duration::from_secs(3) }
        );
        assert_eq!(outages.heard(Some("refused")), Heard::Same, "the others in flight count once");
        let Gate::Go(Some(probe)) = outages.gate(&stop).await else { panic!("no probe") };
        assert!(outages.probe.try_lock().is_err(), "one probe at a time");
        drop(probe);
        assert!(matches!(outages.heard(None), Heard::Back(_)));
        assert!(matches!(outages.gate(&stop).await, Gate::Go(None)));
    }
}
