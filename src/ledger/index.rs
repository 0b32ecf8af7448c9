//! The ledger index: what a run needs to know of every key, compact enough for millions of keys.
//!
//! A key is its 16-byte [`Digest`]. A link's id and payment URI are written once into a text arena
//! (`arena.rs`), which doubles as the set of claimed link ids; the URI's common prefix
//! (`https://pay.omise.co/links/`) is kept once for all links. The request a link was made with is not held at all: the index keeps the byte offset
//! of its `intent` line and reads it back from the file on the rare occasion it is needed (to say what
//! changed in a conflict). A created key costs about 150 bytes in all (`bench-helper read` measures a
//! million: 150 MB, against 1.9 GB when every event was held as parsed).

use hashbrown::HashTable;
use std::num::NonZeroU64;
use std::path::PathBuf;

use super::arena::Links;
use super::{Event, FileStamp, Time};
use crate::digest::Digest;
use crate::rate::Rate;
use crate::request::LinkRequest;
use crate::terms::{AnswerTo, Payment, RetireReason, Unread};

/// A key's link, as the index holds it; [`Index::link_id`] and [`Index::payment_uri`] read its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkRecord {
    text: usize,
    /// Fingerprint of the request that made it.
    pub fingerprint: Digest,
    line: NonZeroU64,
    /// When the ledger learned of it (the host's time of its `created`, `adopted` or `settled` line):
    /// never before the link was made.
    made: Time,
}

impl LinkRecord {
    /// Ledger line of the event (tells this run's links from earlier ones).
    pub fn line(&self) -> u64 {
        self.line.get()
    }

    /// When the ledger learned of the link: it is at least this old.
    pub fn made(&self) -> Time {
        self.made
    }
}

/// Milliseconds since the epoch, plus one: 0 stands for "none" in a slot.
fn stamp(at: Time) -> u64 {
    at.millis().saturating_add(1)
}

fn from_stamp(stamp: u64) -> Option<Time> {
    stamp.checked_sub(1).map(Time::from_millis)
}

/// The rates learned from a stricter server (the latest `learned` event): the job's rates they were learned
/// under, and them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedRates {
    /// The job's rates when they were learned.
    pub job_rates: Vec<Rate>,
    /// The rates kept.
    pub rates: Vec<Rate>,
}

/// What the ledger says of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyState {
    key: Digest,
    /// The key's link, once made or adopted.
    pub link: Option<LinkRecord>,
    /// Byte offset of the key's latest `intent` line (the request its link was made with); 0: none (the
    /// header is there).
    intent: u64,
    /// The earliest request with no outcome yet, as [`stamp`]; 0: none.
    open_since: u64,
    rare: Option<Box<Rare>>,
}

/// What few keys have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rare {
    /// The request (and fingerprint) of an open intent read from the file; a run's own are its rows'.
    open: Option<(LinkRequest, Digest)>,
    failed: Option<(String, String)>,
    replace_refused: Option<String>,
    payment: Option<(Payment, u64)>,
    /// Why the row waits to be settled by hand (its create's answer could not be read), and the byte offset
    /// of the `unreadable` line that kept the answer.
    unsettled: Option<(Unread, u64)>,
    /// A `retire_intent` of the current link with no `retired` after it: why it was to end.
    retiring: Option<RetireReason>,
    /// The current link was ended by `[lifecycle]`: why, and when.
    retired: Option<(RetireReason, Time)>,
}

impl KeyState {
    fn new(key: Digest) -> KeyState {
        KeyState { key, link: None, intent: 0, open_since: 0, rare: None }
    }

    /// When the earliest request with no outcome yet was sent, if there is one.
    pub fn open_since(&self) -> Option<Time> {
        from_stamp(self.open_since)
    }

    /// The key's digest.
    pub fn key(&self) -> Digest {
        self.key
    }

    /// Why the link was about to be retired, when its delete's fate is unknown (no `retired` followed).
    pub fn retiring(&self) -> Option<RetireReason> {
        self.rare.as_ref()?.retiring
    }

    /// Why and when `[lifecycle]` ended the key's link, if it did.
    pub fn retired(&self) -> Option<(RetireReason, Time)> {
        self.rare.as_ref()?.retired
    }

    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// The last permanent failure (code, message), if no link came after it.
    pub fn failed(&self) -> Option<&(String, String)> {
        self.rare.as_ref()?.failed.as_ref()
    }

    /// Why `--replace-changed` kept the link, when it refused.
    pub fn replace_refused(&self) -> Option<&str> {
        self.rare.as_ref()?.replace_refused.as_deref()
    }

    /// The last `refresh` reading, with the ledger line it is on.
    pub fn payment(&self) -> Option<&(Payment, u64)> {
        self.rare.as_ref()?.payment.as_ref()
    }

    /// Why the row waits to be settled by hand, if it does (its create's answer could not be read).
    pub fn unsettled(&self) -> Option<&Unread> {
        self.rare.as_ref()?.unsettled.as_ref().map(|(unread, _)| unread)
    }

    /// The request and fingerprint of an open intent found in the file at start (`None` for one this run
    /// made, whose request is its row's).
    pub fn open_request(&self) -> Option<&(LinkRequest, Digest)> {
        self.rare.as_ref()?.open.as_ref()
    }

    fn close(&mut self) {
        self.open_since = 0;
        if let Some(rare) = &mut self.rare {
            rare.open = None;
            rare.unsettled = None;
        }
    }
}

/// Everything a run needs from the ledger, read once at start and kept equal to the file as the run appends.
#[derive(Debug, Default)]
pub struct Index {
    slots: Vec<KeyState>,
    by_key: HashTable<usize>,
    /// Slots touched lately, by digest (direct-mapped): a `created` line mostly follows its `intent` closely.
    recent: [(Digest, usize); RECENT],
    links: Links,
    /// The ledger file, to read back a link's request.
    pub(super) path: Option<PathBuf>,
    /// When requests were sent (intents, as [`stamp`]), for the rate-limit budget of a re-run.
    sent: Vec<u64>,
    /// Lines in the file.
    pub lines: u64,
    /// Line of the latest `run` event (0: none).
    pub last_run: u64,
    /// Line of the latest `refresh_started`, while no `refresh_finished` follows it (a refresh to resume).
    pub unfinished_refresh: Option<u64>,
    /// The output the latest `output` event describes.
    pub last_output: Option<FileStamp>,
    /// The latest rates learned from a stricter server.
    pub learned: Option<LearnedRates>,
    /// Each row's messages.
    pub deliveries: super::Deliveries,
    /// The events `listen` acted on (`heard`): each is acted on once.
    pub heard: std::collections::HashSet<String>,
    /// Where `refresh --events` reads from next: a time, and the events already read at it.
    pub events_read: Option<(super::Time, Vec<String>)>,
}

const RECENT: usize = 32;

impl Index {
    /// Room for about `keys` keys (a guess from the file's size: a wrong one costs a rehash, no more).
    pub(super) fn reserve(&mut self, keys: usize) {
        self.slots.reserve(keys);
        let slots = &self.slots;
        self.by_key.reserve(keys, |&i| slots[i].key.bucket());
        self.sent.reserve(keys);
    }

    /// When requests were sent (intents), for the rate-limit budget of a re-run.
    pub fn sent(&self) -> impl Iterator<Item = Time> + '_ {
        self.sent.iter().filter_map(|&at| from_stamp(at))
    }

    /// What the ledger says of a key (by its [`crate::row_key::RowKey::id`]).
    pub fn get(&self, key: &Digest) -> Option<&KeyState> {
        let slot = self.by_key.find(key.bucket(), |&i| self.slots[i].key == *key)?;
        Some(&self.slots[*slot])
    }

    /// The slot number of a key, below [`Index::len`].
    pub fn position(&self, key: &Digest) -> Option<usize> {
        self.by_key.find(key.bucket(), |&i| self.slots[i].key == *key).copied()
    }

    fn slot(&mut self, key: Digest) -> &mut KeyState {
        let line = key.bucket() as usize % RECENT;
        let (seen, i) = self.recent[line];
        if seen == key && self.slots.get(i).is_some_and(|s| s.key == key) {
            return &mut self.slots[i];
        }
        let slots = &mut self.slots;
        let entry = self.by_key.entry(key.bucket(), |&i| slots[i].key == key, |&i| slots[i].key.bucket());
        let i = match entry {
            hashbrown::hash_table::Entry::Occupied(found) => *found.get(),
            hashbrown::hash_table::Entry::Vacant(vacant) => {
                let i = slots.len();
                slots.push(KeyState::new(key));
                vacant.insert(i);
                i
            }
        };
        self.recent[line] = (key, i);
        &mut slots[i]
    }

    /// Keys with any state.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// No key has any state.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Some key has a `refresh` reading.
    pub fn has_payments(&self) -> bool {
        self.slots.iter().any(|s| s.payment().is_some())
    }

    /// Whether some key of this ledger ever held this link id (reconciliation never adopts one).
    pub fn is_claimed(&self, link_id: &str) -> bool {
        self.links.find(link_id).is_some()
    }

    /// The link's id.
    pub fn link_id(&self, link: &LinkRecord) -> &str {
        self.links.id_at(link.text)
    }

    /// The link's payment URI.
    pub fn payment_uri(&self, link: &LinkRecord) -> String {
        self.links.uri_at(link.text)
    }

    /// Byte offset of the key's latest `intent` line, to read its request back ([`super::ReadBack`]).
    pub fn intent_offset(&self, state: &KeyState) -> Option<u64> {
        Some(state.intent).filter(|&o| o > 0)
    }

    pub(super) fn on_intent(&mut self, key: Digest, at: Time, offset: u64) {
        let at = stamp(at);
        self.sent.push(at);
        let state = self.slot(key);
        state.intent = offset;
        state.open_since = if state.open_since == 0 { at } else { state.open_since.min(at) };
    }

    pub(super) fn on_link(
        &mut self,
        key: Digest,
        link_id: &str,
        payment_uri: &str,
        fingerprint: Digest,
        made: Time,
        line: u64,
    ) {
        let text = self.links.intern(link_id, payment_uri);
        let state = self.slot(key);
        state.close();
        if let Some(rare) = &mut state.rare {
            rare.failed = None;
            rare.retiring = None;
            rare.retired = None;
        }
        // Line 1 is the header, so every event line is above zero.
        state.link =
            Some(LinkRecord { text, fingerprint, line: NonZeroU64::new(line).unwrap_or(NonZeroU64::MIN), made });
    }

    /// A `refresh` reading of the key's current link (one of a link it no longer has is ignored).
    fn on_refreshed(&mut self, key: Digest, link_id: &str, payment: Payment, line: u64) {
        let current = self.get(&key).and_then(|s| s.link).is_some_and(|l| self.link_id(&l) == link_id);
        if current {
            self.slot(key).rare().payment = Some((payment, line));
        }
    }

    /// The key's link is deleted on the server, if it is still this one. The id stays claimed:
    /// reconciliation must never adopt a deleted link.
    fn on_deleted(&mut self, key: Digest, link_id: &str) {
        let gone = self.get(&key).and_then(|s| s.link).is_some_and(|l| self.link_id(&l) == link_id);
        if gone {
            let state = self.slot(key);
            state.link = None;
            state.intent = 0;
            if let Some(rare) = &mut state.rare {
                rare.payment = None;
                rare.replace_refused = None;
                rare.retiring = None;
                rare.retired = None;
            }
        }
    }

    /// A `retire_intent` (`done`: `None`) or `retired` (`done`: its time) of the key's current link; one of a
    /// link the key no longer has is ignored.
    fn on_retire(&mut self, key: Digest, link_id: &str, reason: RetireReason, done: Option<Time>) {
        let current = self.get(&key).and_then(|s| s.link).is_some_and(|l| self.link_id(&l) == link_id);
        if current {
            let rare = self.slot(key).rare();
            rare.retiring = done.is_none().then_some(reason);
            rare.retired = done.map(|at| (reason, at));
        }
    }

    /// Keys whose link `[lifecycle]` may still end: a link, not retired.
    pub fn live_links(&self) -> impl Iterator<Item = &KeyState> + '_ {
        self.slots.iter().filter(|s| s.link.is_some() && s.retired().is_none())
    }

    /// The row waits to be settled by hand; the `unreadable` or `unmatched` line is at byte `offset`.
    fn on_unsettled(&mut self, key: Digest, unread: Unread, offset: u64) {
        self.slot(key).rare().unsettled = Some((unread, offset));
    }

    /// Applies one event found on `line`, at byte `offset`.
    pub(super) fn apply(&mut self, event: Event, line: u64, offset: u64) {
        match event {
            Event::Updated { key, link_id, fingerprint, .. } => {
                let key = key.id();
                let current = self.get(&key).and_then(|s| s.link).filter(|l| self.link_id(l) == link_id);
                if let Some(mut link) = current {
                    // The same link, made by the same run as before: only what it was made from changed.
                    link.fingerprint = fingerprint;
                    self.slot(key).link = Some(link);
                }
            }
            Event::Run { .. } => self.last_run = line,
            Event::Intent { key, at, .. } => self.on_intent(key.id(), at, offset),
            Event::Created { key, link_id, payment_uri, fingerprint, at }
            | Event::Adopted { key, link_id, payment_uri, fingerprint, at, .. } => {
                self.on_link(key.id(), &link_id, &payment_uri, fingerprint, at, line);
            }
            Event::Unsent { key, at, .. } => {
                let state = self.slot(key.id());
                // Only this request was open: an earlier one whose outcome is unknown keeps the row open.
                if state.open_since == stamp(at) {
                    state.close();
                }
            }
            Event::Failed { key, code, message, .. } => {
                let state = self.slot(key.id());
                state.close();
                state.rare().failed = Some((code, message));
            }
            Event::Deleted { key, link_id, .. } => self.on_deleted(key.id(), &link_id),
            Event::RetireIntent { key, link_id, reason, .. } => self.on_retire(key.id(), &link_id, reason, None),
            Event::Retired { key, link_id, reason, at } => self.on_retire(key.id(), &link_id, reason, Some(at)),
            Event::ReplaceRefused { key, reason, .. } => {
                self.slot(key.id()).rare().replace_refused = Some(reason);
            }
            // A list's answer leaves the row as it was: its request is reconciled again.
            Event::Unreadable {
                key,
                answer_to: answer_to @ (AnswerTo::Create | AnswerTo::Recover),
                status,
                missing,
                ..
            } => {
                self.on_unsettled(key.id(), Unread { answer_to, status, missing, candidates: None }, offset);
            }
            Event::Unmatched { key, candidates, .. } => {
                let (answer_to, candidates) = (AnswerTo::Recover, Some(candidates));
                self.on_unsettled(
                    key.id(),
                    Unread { answer_to, status: 0, missing: String::new(), candidates },
                    offset,
                );
            }
            Event::Header(_) | Event::ReplaceIntent { .. } | Event::UpdateIntent { .. } | Event::Unreadable { .. } => {}
            Event::Settled { key, link_id: Some(link_id), payment_uri, fingerprint, at, .. } => {
                let uri = payment_uri.unwrap_or_default();
                self.on_link(key.id(), &link_id, &uri, fingerprint, at, line);
            }
            Event::Settled { key, link_id: None, .. } => self.slot(key.id()).close(),
            Event::Output { bytes, modified, .. } => self.last_output = Some(FileStamp { bytes, modified }),
            Event::Learned { job_rates, rates, .. } => self.learned = Some(LearnedRates { job_rates, rates }),
            Event::RefreshStarted { .. } => self.unfinished_refresh = Some(line),
            Event::RefreshFinished { .. } => self.unfinished_refresh = None,
            Event::DeliverIntent { .. }
            | Event::DeliverCommit { .. }
            | Event::DeliverDeferred { .. }
            | Event::Delivered { .. }
            | Event::DeliverFailed { .. } => self.deliveries.apply(event),
            Event::Refreshed { key, link_id, payment, .. } => self.on_refreshed(key.id(), &link_id, payment, line),
            Event::EventsRead { from, seen, .. } => self.events_read = Some((from, seen)),
            Event::Heard { event, key, link_id, payment, .. } => {
                self.on_refreshed(key.id(), &link_id, payment, line);
                self.heard.insert(event);
            }
        }
        self.lines = line;
    }

    /// Applies an event this run appended at byte `offset`, keeping the index equal to the file.
    pub fn record(&mut self, event: Event, offset: u64) {
        let line = self.lines + 1;
        self.apply(event, line, offset);
    }

    /// Byte offsets of the `unreadable` lines kept for rows waiting to be settled.
    pub(super) fn kept_offsets(&self) -> Vec<u64> {
        self.slots.iter().filter_map(|s| s.rare.as_ref()?.unsettled.as_ref().map(|(_, offset)| *offset)).collect()
    }

    /// The slots with a request still open, and the byte offset of each one's latest `intent` line.
    pub(super) fn open_intents(&self) -> Vec<(usize, u64)> {
        let open = |(slot, s): (usize, &KeyState)| (s.open_since > 0 && s.intent > 0).then_some((slot, s.intent));
        self.slots.iter().enumerate().filter_map(open).collect()
    }

    /// The request of a slot's open intent, as read back from the file.
    pub(super) fn set_open_request(&mut self, slot: usize, request: LinkRequest, fingerprint: Digest) {
        if let Some(state) = self.slots.get_mut(slot) {
            state.rare().open = Some((request, fingerprint));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An index made from `events`, each as a run appends it (lines 1, 2, …, at made-up offsets).
    fn from(events: Vec<Event>) -> Index {
        let mut index = Index::default();
        for (n, event) in events.into_iter().enumerate() {
            index.record(event, 100 * (n as u64 + 1));
        }
        index
    }

    fn at(secs: u64) -> Time {
        Time::from(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000 + secs))
    }

    /// A fingerprint: the digest `pair` repeated sixteen times spells.
    fn print(pair: &str) -> Digest {
        Digest::from_hex(&pair.repeat(16)).expect("hex")
    }

    fn request() -> LinkRequest {
        LinkRequest::Classic(crate::request::ClassicRequest {
            amount: 1000,
            currency: "thb".into(),
            title: "t".into(),
            description: "d".into(),
            multiple: false,
            metadata: std::collections::BTreeMap::new(),
        })
    }

    fn intent(key: &str, secs: u64) -> Event {
        Event::Intent { key: key.into(), fingerprint: print("ab"), at: at(secs), request: request() }
    }

    fn created(key: &str, link: &str) -> Event {
        let uri = format!("https://pay.example/{link}");
        Event::Created { key: key.into(), link_id: link.into(), payment_uri: uri, fingerprint: print("ab"), at: at(9) }
    }

    fn state<'i>(index: &'i Index, key: &str) -> &'i KeyState {
        index.get(&Digest::of(key.as_bytes())).unwrap()
    }

    fn link_of(index: &Index, key: &str) -> Option<String> {
        state(index, key).link.map(|l| index.link_id(&l).to_owned())
    }

    #[test]
    fn an_intent_opens_its_row_from_the_earliest_unresolved_request() {
        let index = from(vec![intent("a", 5), intent("a", 7)]);
        let open = state(&index, "a").open_since().unwrap();
        assert_eq!(open, at(5));
        assert_eq!(index.sent().count(), 2, "both requests count against the windows");
    }

    #[test]
    fn a_link_closes_the_row_and_is_kept_with_its_line() {
        let index = from(vec![intent("a", 1), created("a", "link_1")]);
        let a = state(&index, "a");
        assert_eq!(
            (a.open_since(), link_of(&index, "a").as_deref(), a.link.unwrap().line()),
            (None, Some("link_1"), 2)
        );
        assert_eq!(index.payment_uri(&a.link.unwrap()), "https://pay.example/link_1");
        assert!(index.is_claimed("link_1") && !index.is_claimed("link_2"));
    }

    #[test]
    fn an_adopted_link_is_a_link_like_a_created_one() {
        let adopted = Event::Adopted {
            key: "a".into(),
            link_id: "link_9".into(),
            payment_uri: "https://pay.example/link_9".into(),
            fingerprint: print("ab"),
            at: at(3),
        };
        let index = from(vec![intent("a", 1), adopted]);
        assert_eq!((state(&index, "a").open_since(), link_of(&index, "a").as_deref()), (None, Some("link_9")));
    }

    #[test]
    fn a_failure_closes_the_row_with_its_words_and_a_later_link_clears_them() {
        let failed = Event::Failed {
            key: "a".into(),
            fingerprint: print("00"),
            code: "invalid_amount".into(),
            message: "too small".into(),
            at: at(2),
        };
        let index = from(vec![intent("a", 1), failed.clone()]);
        let a = state(&index, "a");
        assert_eq!((a.open_since(), a.failed()), (None, Some(&("invalid_amount".to_owned(), "too small".to_owned()))));
        let index = from(vec![intent("a", 1), failed, intent("a", 3), created("a", "link_1")]);
        assert_eq!(state(&index, "a").failed(), None);
    }

    #[test]
    fn an_unsent_request_leaves_the_row_pending_again() {
        let unsent = Event::Unsent { key: "a".into(), at: at(1), reason: "refused".into() };
        let index = from(vec![intent("a", 1), unsent]);
        assert_eq!(state(&index, "a").open_since(), None);
    }

    #[test]
    fn an_unsent_request_keeps_an_earlier_unresolved_one_open() {
        let unsent = Event::Unsent { key: "a".into(), at: at(4), reason: "refused".into() };
        let index = from(vec![intent("a", 1), intent("a", 4), unsent]);
        assert!(state(&index, "a").open_since().is_some(), "the request of second 1 may still have landed");
    }

    #[test]
    fn a_deleted_link_leaves_the_row_but_its_id_stays_claimed() {
        let deleted = |link: &str| Event::Deleted { key: "a".into(), link_id: link.into(), at: at(5) };
        let index = from(vec![intent("a", 1), created("a", "link_1"), deleted("link_other")]);
        assert_eq!(link_of(&index, "a").as_deref(), Some("link_1"), "another link's deletion changes nothing");
        let index = from(vec![intent("a", 1), created("a", "link_1"), deleted("link_1")]);
        assert_eq!(state(&index, "a").link, None);
        assert!(index.is_claimed("link_1"), "a deleted link is never adopted again");
    }

    #[test]
    fn an_update_changes_the_fingerprint_of_that_link_alone() {
        let updated =
            |link: &str| Event::Updated { key: "a".into(), link_id: link.into(), fingerprint: print("cd"), at: at(6) };
        let index = from(vec![intent("a", 1), created("a", "link_1"), updated("link_1")]);
        assert_eq!(state(&index, "a").link.unwrap().fingerprint, print("cd"));
        let index = from(vec![intent("a", 1), created("a", "link_1"), updated("link_2")]);
        assert_eq!(state(&index, "a").link.unwrap().fingerprint, print("ab"));
    }

    #[test]
    fn a_refused_replacement_is_kept() {
        let refused =
            Event::ReplaceRefused { key: "a".into(), link_id: "link_1".into(), reason: "paid".into(), at: at(7) };
        let index = from(vec![intent("a", 1), created("a", "link_1"), refused]);
        assert_eq!(state(&index, "a").replace_refused(), Some("paid"));
    }

    #[test]
    fn a_payment_is_kept_for_the_current_link_only() {
        let paid = |link: &str| Event::Refreshed {
            key: "a".into(),
            link_id: link.into(),
            payment: Payment { charges: 1, paid_amount: 1000, currency: "thb".into(), ..Payment::default() },
            at: at(8),
        };
        let index = from(vec![intent("a", 1), created("a", "link_1"), paid("link_old")]);
        assert_eq!(state(&index, "a").payment(), None);
        let index = from(vec![intent("a", 1), created("a", "link_1"), paid("link_1")]);
        assert_eq!(state(&index, "a").payment().map(|(p, line)| (p.paid_amount, *line)), Some((1000, 3)));
        assert!(index.has_payments());
    }

    #[test]
    fn a_refresh_is_unfinished_until_its_end_mark() {
        let started = Event::RefreshStarted { at: at(1) };
        let index = from(vec![Event::Run { at: at(0), version: "t".into() }, started.clone()]);
        assert_eq!((index.last_run, index.unfinished_refresh), (1, Some(2)));
        let index = from(vec![started, Event::RefreshFinished { at: at(2) }]);
        assert_eq!(index.unfinished_refresh, None);
    }

    #[test]
    fn the_output_and_a_learned_rate_are_remembered() {
        let rate = |text: &str| text.parse::<crate::rate::Rate>().unwrap();
        let output = Event::Output { bytes: 42, modified: 17, at: at(1) };
        let learned = Event::Learned {
            job_rates: vec![rate("20/s")],
            rates: vec![rate("10/s")],
            was: rate("20/s"),
            now: rate("10/s"),
            at: at(2),
        };
        let index = from(vec![output, learned]);
        assert_eq!(index.last_output, Some(super::super::FileStamp { bytes: 42, modified: 17 }));
        assert_eq!(index.learned, Some(LearnedRates { job_rates: vec![rate("20/s")], rates: vec![rate("10/s")] }));
    }

    #[test]
    fn an_unreadable_answer_waits_to_be_settled_and_settling_ends_it() {
        let unreadable = Event::Unreadable {
            key: "a".into(),
            fingerprint: print("ab"),
            answer_to: AnswerTo::Create,
            status: 200,
            missing: "link id".into(),
            body: "{}".into(),
            at: at(2),
        };
        let index = from(vec![intent("a", 1), unreadable.clone()]);
        let unread = Unread { answer_to: AnswerTo::Create, status: 200, missing: "link id".into(), candidates: None };
        assert_eq!(state(&index, "a").unsettled(), Some(&unread));
        let none =
            Event::Settled { key: "a".into(), link_id: None, payment_uri: None, fingerprint: print("ab"), at: at(3) };
        let index = from(vec![intent("a", 1), unreadable.clone(), none]);
        assert_eq!((state(&index, "a").unsettled(), state(&index, "a").open_since()), (None, None));
        let settled = Event::Settled {
            key: "a".into(),
            link_id: Some("link_5".into()),
            payment_uri: Some("https://pay.example/link_5".into()),
            fingerprint: print("ab"),
            at: at(3),
        };
        let index = from(vec![intent("a", 1), unreadable, settled]);
        assert_eq!(link_of(&index, "a").as_deref(), Some("link_5"));
    }

    #[test]
    fn keys_grow_past_many_slots() {
        let mut index = Index::default();
        for i in 0..10_000u32 {
            index.on_link(
                Digest::of(&i.to_le_bytes()),
                &format!("link_{i}"),
                "u/x",
                Digest::of(b"f"),
                at(0),
                u64::from(i),
            );
        }
        assert_eq!(index.len(), 10_000);
        let state = index.get(&Digest::of(&77u32.to_le_bytes())).and_then(|s| s.link);
        assert_eq!(state.map(|l| index.link_id(&l).to_owned()), Some("link_77".to_owned()));
        assert!(index.is_claimed("link_9999") && !index.is_claimed("link_10000"));
    }
}
