//! At-most-once handling (PROTOCOL.md 8): the replies of handled requests,
//! by (client key, request id), so that a retried request is answered from
//! here instead of running the handler again.

use crate::constants::{REPLY_CACHE_BYTES, REPLY_CACHE_ENTRIES};
use crate::keys::Fingerprint;
use crate::message::Reply;
use crate::proto::msg::RequestId;
use crate::status;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Whose request: the authenticated client key and the request's id.
pub(crate) type CacheKey = (Fingerprint, RequestId);

enum Entry {
    InProgress,
    Done(Arc<Reply>),
}

#[derive(Default)]
struct Cache {
    map: HashMap<CacheKey, Entry>,
    order: VecDeque<CacheKey>,
    bytes: usize,
    /// Entries at the front of `order` already looked at for bodies to drop:
    /// the next drop starts after them instead of rescanning (which made each
    /// request cost a scan of the whole cache once it was over budget).
    scanned: usize,
    /// Threads waiting in [`ReplyCache::claim`]: only then does a finished
    /// request wake anyone (a retry racing its original is rare; the common
    /// case pays no system call).
    waiting: usize,
}

impl Cache {
    fn insert(&mut self, key: CacheKey, reply: Arc<Reply>, new: bool) {
        self.bytes += reply.body.len();
        if new {
            self.order.push_back(key.clone());
        }
        self.map.insert(key, Entry::Done(reply));
        self.evict();
    }

    /// Over the byte budget, the oldest replies lose their bodies but keep
    /// their ids (a retry then gets REPLY_LOST, never a second handler run);
    /// over the entry budget, the oldest ids are forgotten.
    fn evict(&mut self) {
        while self.bytes > REPLY_CACHE_BYTES && self.scanned < self.order.len() {
            let key = &self.order[self.scanned];
            if let Some(Entry::Done(r)) = self.map.get_mut(key)
                && !r.body.is_empty()
            {
                self.bytes -= r.body.len();
                *r = Arc::new(Reply::new(status::REPLY_LOST, ""));
            }
            self.scanned += 1;
        }
        let mut budget = self.order.len();
        while self.map.len() > REPLY_CACHE_ENTRIES && budget > 0 {
            budget -= 1;
            self.scanned = self.scanned.saturating_sub(1);
            let Some(key) = self.order.pop_front() else {
                break;
            };
            match self.map.get(&key) {
                Some(Entry::InProgress) => self.order.push_back(key),
                Some(Entry::Done(r)) => {
                    self.bytes -= r.body.len();
                    self.map.remove(&key);
                }
                None => {}
            }
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
    fn lock(&self) -> MutexGuard<'_, Cache> {
        // Each critical section is a few inserts and removals: a panic inside
        // one cannot leave the cache inconsistent, so recover from poisoning.
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The stored reply of `key`, if it has one.
    pub(crate) fn stored(&self, key: &CacheKey) -> Option<Arc<Reply>> {
        match self.lock().map.get(key) {
            Some(Entry::Done(reply)) => Some(reply.clone()),
            _ => None,
        }
    }

    /// Claim `key` for handling, or get its reply. If the same request is
    /// running on another connection (the client retried while it was being
    /// handled), wait up to `wait` for it.
    pub(crate) fn claim(&self, key: &CacheKey, wait: Duration) -> Claim {
        let mut cache = self.lock();
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
                    cache.order.push_back(key.clone());
                    return Claim::Claimed;
                }
            }
        }
    }

    /// Store the reply of a claimed request and wake those waiting for it.
    pub(crate) fn finish(&self, key: CacheKey, reply: Arc<Reply>) {
        let mut cache = self.lock();
        cache.insert(key, reply, false);
        if cache.waiting > 0 {
            self.ready.notify_all();
        }
    }

    /// Store the final reply of an upload (never claimed: uploads are
    /// recognized by their stored reply alone, PROTOCOL.md 7.7.10).
    pub(crate) fn remember(&self, key: CacheKey, reply: Reply) {
        self.lock().insert(key, Arc::new(reply), true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
