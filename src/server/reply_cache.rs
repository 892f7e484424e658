//! At-most-once handling (PROTOCOL.md 8): the replies of handled requests,
//! by (client key, request id), so that a retried request is answered from
//! here instead of running the handler again.

use super::lock;
use crate::constants::{REPLY_CACHE_BYTES, REPLY_CACHE_ENTRIES};
use crate::keys::Fingerprint;
use crate::message::Reply;
use crate::proto::msg::RequestId;
use crate::status;
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Whose request: the authenticated client key and the request's id.
pub(crate) type CacheKey = (Fingerprint, RequestId);

enum Entry {
    InProgress,
    Done(Arc<Reply>),
}

/// One client's finished requests, in the order they finished.
#[derive(Default)]
struct Share {
    done: VecDeque<RequestId>,
    /// `done[..trimmed]` have no body left (or never had one).
    trimmed: usize,
    /// Body bytes of `done[trimmed..]`.
    bytes: usize,
}

/// The budgets are shared, but each is taken from the client that holds the
/// most of it: one client's requests can only ever push out its own replies
/// (PROTOCOL.md 8). Bodies are dropped in the order requests finished.
#[derive(Default)]
struct Cache {
    map: HashMap<CacheKey, Entry>,
    shares: HashMap<Fingerprint, Share>,
    /// The shares by finished entries and by body bytes, largest last.
    by_entries: BTreeSet<(usize, Fingerprint)>,
    by_bytes: BTreeSet<(usize, Fingerprint)>,
    entries: usize,
    bytes: usize,
    /// Threads waiting in [`ReplyCache::claim`]: only then does a finished
    /// request wake anyone (a retry racing its original is rare; the common
    /// case pays no system call).
    waiting: usize,
}

impl Cache {
    fn insert(&mut self, key: CacheKey, reply: Arc<Reply>) {
        if let Some(Entry::Done(_)) = self.map.get(&key) {
            return; // the first answer stands
        }
        let len = reply.body.len();
        self.map.insert(key.clone(), Entry::Done(reply));
        let (client, id) = key;
        let mut share = self.take(&client);
        share.done.push_back(id);
        share.bytes += len;
        self.put(client, share);
        self.entries += 1;
        self.bytes += len;
        self.evict();
    }

    /// Take `client`'s share out of the indexes, to change it and [`put`](Self::put) it back.
    fn take(&mut self, client: &Fingerprint) -> Share {
        let share = self.shares.remove(client).unwrap_or_default();
        self.by_entries.remove(&(share.done.len(), client.clone()));
        self.by_bytes.remove(&(share.bytes, client.clone()));
        share
    }

    fn put(&mut self, client: Fingerprint, share: Share) {
        if !share.done.is_empty() {
            self.by_entries.insert((share.done.len(), client.clone()));
            self.by_bytes.insert((share.bytes, client.clone()));
            self.shares.insert(client, share);
        }
    }

    /// Over the byte budget, the largest share's oldest replies lose their
    /// bodies but keep their ids (a retry then gets REPLY_LOST, never a second
    /// handler run); over the entry budget, its oldest ids are forgotten.
    fn evict(&mut self) {
        while self.bytes > REPLY_CACHE_BYTES {
            let Some((_, client)) = self.by_bytes.last().cloned() else { break };
            let mut share = self.take(&client);
            while let Some(&id) = share.done.get(share.trimmed) {
                share.trimmed += 1;
                if let Some(Entry::Done(r)) = self.map.get_mut(&(client.clone(), id))
                    && !r.body.is_empty()
                {
                    share.bytes -= r.body.len();
                    self.bytes -= r.body.len();
                    *r = Arc::new(Reply::new(status::REPLY_LOST, ""));
                    break;
                }
            }
            self.put(client, share);
        }
        while self.entries > REPLY_CACHE_ENTRIES {
            let Some((_, client)) = self.by_entries.last().cloned() else { break };
            let mut share = self.take(&client);
            if let Some(id) = share.done.pop_front() {
                share.trimmed = share.trimmed.saturating_sub(1);
                if let Some(Entry::Done(r)) = self.map.remove(&(client.clone(), id)) {
                    share.bytes -= r.body.len();
                    self.bytes -= r.body.len();
                }
                self.entries -= 1;
            }
            self.put(client, share);
        }
    }
}

/// The cache shared by all connections of a server.
#[derive(Default)]
pub(crate) struct ReplyCache {
    cache: Mutex<Cache>,
    ready: Condvar,
}

/// What a request's id says about it.
pub(crate) enum Claim {
    /// New: the caller runs the handler, then calls [`ReplyCache::finish`].
    Claimed,
    /// Handled before (or still running elsewhere past the wait): its reply.
    Answered(Arc<Reply>),
}

impl ReplyCache {
    /// The stored reply of `key`, if it has one.
    pub(crate) fn stored(&self, key: &CacheKey) -> Option<Arc<Reply>> {
        match lock(&self.cache).map.get(key) {
            Some(Entry::Done(reply)) => Some(reply.clone()),
            _ => None,
        }
    }

    /// Claim `key` for handling, or get its reply. If the same request is
    /// running on another connection (the client retried while it was being
    /// handled), wait up to `wait` for it.
    pub(crate) fn claim(&self, key: &CacheKey, wait: Duration) -> Claim {
        let mut cache = lock(&self.cache);
        let until = Instant::now() + wait;
        loop {
            match cache.map.get(key) {
                Some(Entry::Done(reply)) => return Claim::Answered(reply.clone()),
                Some(Entry::InProgress) => {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        let lost = Reply::new(status::REPLY_LOST, "request still in progress");
                        return Claim::Answered(Arc::new(lost));
                    }
                    cache.waiting += 1;
                    let woken = self.ready.wait_timeout(cache, left);
                    cache = woken.unwrap_or_else(|p| p.into_inner()).0;
                    cache.waiting -= 1;
                }
                None => {
                    cache.map.insert(key.clone(), Entry::InProgress);
                    return Claim::Claimed;
                }
            }
        }
    }

    /// Store the reply of a claimed request and wake those waiting for it.
    pub(crate) fn finish(&self, key: CacheKey, reply: Arc<Reply>) {
        let mut cache = lock(&self.cache);
        cache.insert(key, reply);
        if cache.waiting > 0 {
            self.ready.notify_all();
        }
    }

    /// Store the final reply of an upload (never claimed: uploads are
    /// recognized by their stored reply alone, PROTOCOL.md 7.7.10).
    pub(crate) fn remember(&self, key: CacheKey, reply: Reply) {
        lock(&self.cache).insert(key, Arc::new(reply));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ReplyCache {
        fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
            lock(&self.cache)
        }
    }

    fn key(client: &str, id: u8) -> CacheKey {
        (client.parse().unwrap(), [id; 16])
    }

    #[test]
    fn a_stored_upload_reply_answers_the_retry_and_only_that_client() {
        let cache = ReplyCache::default();
        let alice = key("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", 1);
        let mallory = key("SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0", 1);
        assert!(cache.stored(&alice).is_none());
        cache.remember(alice.clone(), Reply::new(0, "stored a.bin"));
        // The retried PUT is answered from here; its handler is not told again.
        assert_eq!(cache.stored(&alice).unwrap().text(), "stored a.bin");
        assert!(
            matches!(cache.claim(&alice, Duration::ZERO), Claim::Answered(r) if r.text() == "stored a.bin")
        );
        // The same request id from another key is another request.
        assert!(cache.stored(&mallory).is_none());
        assert!(matches!(cache.claim(&mallory, Duration::ZERO), Claim::Claimed));
    }

    const ALICE: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    const MALLORY: &str = "SHA256:ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0";

    fn wide_key(client: &str, n: usize) -> CacheKey {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(n as u64).to_be_bytes());
        (client.parse().unwrap(), id)
    }

    /// Bytes of reply bodies the cache holds.
    fn kept(cache: &ReplyCache) -> usize {
        let cache = cache.lock();
        let body = |e: &Entry| if let Entry::Done(r) = e { r.body.len() } else { 0 };
        let sum = cache.map.values().map(body).sum();
        let shares = cache.shares.values();
        assert_eq!((cache.bytes, cache.bytes), (sum, shares.map(|s| s.bytes).sum()));
        sum
    }

    #[test]
    fn the_byte_bound_holds_when_replies_finish_out_of_order() {
        let cache = ReplyCache::default();
        let size = REPLY_CACHE_BYTES / 16;
        let reply = || Arc::new(Reply::new(0, vec![1u8; size]));
        // Slow requests are claimed first and finish last, after quick ones
        // have pushed the cache over its budget.
        let slow: Vec<CacheKey> = (0..40).map(|n| wide_key(ALICE, n)).collect();
        for k in &slow {
            assert!(matches!(cache.claim(k, Duration::ZERO), Claim::Claimed));
        }
        for n in 100..120 {
            let k = wide_key(MALLORY, n);
            assert!(matches!(cache.claim(&k, Duration::ZERO), Claim::Claimed));
            cache.finish(k, reply());
            assert!(kept(&cache) <= REPLY_CACHE_BYTES + size, "{} bytes kept", kept(&cache));
        }
        for k in slow.into_iter().rev() {
            cache.finish(k, reply());
            assert!(kept(&cache) <= REPLY_CACHE_BYTES + size, "{} bytes kept", kept(&cache));
        }
    }

    #[test]
    fn one_clients_requests_cannot_evict_another_clients_entry_or_body() {
        let cache = ReplyCache::default();
        let alice = wide_key(ALICE, 0);
        assert!(matches!(cache.claim(&alice, Duration::ZERO), Claim::Claimed));
        cache.finish(alice.clone(), Arc::new(Reply::ok("paid")));
        for n in 0..REPLY_CACHE_ENTRIES + 16 {
            let k = wide_key(MALLORY, n);
            assert!(matches!(cache.claim(&k, Duration::ZERO), Claim::Claimed));
            cache.finish(k, Arc::new(Reply::ok(if n < 40 { vec![0u8; 1 << 20] } else { vec![] })));
        }
        // Alice's retry is answered, with its body; Mallory lost its own oldest.
        let answered = |k: &CacheKey| match cache.claim(k, Duration::ZERO) {
            Claim::Answered(r) => Some(r.text()),
            Claim::Claimed => None,
        };
        assert_eq!(answered(&alice).as_deref(), Some("paid"));
        assert_eq!(answered(&wide_key(MALLORY, 0)), None);
        assert!(kept(&cache) <= REPLY_CACHE_BYTES);
    }

    #[test]
    fn over_the_byte_budget_a_reply_loses_its_body_but_is_never_handled_twice() {
        let cache = ReplyCache::default();
        let first = key("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", 1);
        let big = vec![7u8; REPLY_CACHE_BYTES / 2 + 1];
        cache.remember(first.clone(), Reply::new(0, big.clone()));
        cache.remember(
            key("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", 2),
            Reply::new(0, big),
        );
        let reply = cache.stored(&first).unwrap();
        assert_eq!((reply.status, reply.body.len()), (status::REPLY_LOST, 0));
        assert!(matches!(cache.claim(&first, Duration::ZERO), Claim::Answered(_)));
    }

    #[test]
    fn a_retry_waiting_for_its_original_is_woken_with_the_reply() {
        let cache = ReplyCache::default();
        let k = key("SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", 1);
        assert!(matches!(cache.claim(&k, Duration::ZERO), Claim::Claimed));
        std::thread::scope(|s| {
            // A lost wake-up would leave the retry waiting its full minute and
            // then answering REPLY_LOST.
            let retry = s.spawn(|| cache.claim(&k, Duration::from_secs(60)));
            for _ in 0..10_000 {
                if cache.lock().waiting > 0 {
                    break;
                }
                std::thread::yield_now();
            }
            cache.finish(k.clone(), Arc::new(Reply::new(0, "done once")));
            let got = retry.join().unwrap();
            assert!(matches!(got, Claim::Answered(r) if r.text() == "done once"));
        });
        assert_eq!(cache.lock().waiting, 0);
    }
}
