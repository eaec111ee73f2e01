//! Answers already serialised for one snapshot, for the rest of the current second.
//!
//! A `/pnodes` answer depends only on the snapshot, the query and the second it is made in
//! (`timestamp` and the snapshot's age are in whole seconds), so every request with the same
//! query in that second gets the same bytes: under load, one request per query and second
//! walks and serialises the page (~110 KB at `limit=100`), the others share its bytes. The
//! cache lives in the snapshot's view, so a new cycle starts it empty.
//!
//! Bounded against callers that vary the query: at most [`MAX_PAGES`] answers a second (the
//! rest are made per request, as without a cache), and keys no longer than [`MAX_KEY_BYTES`].

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;

/// Most answers kept for one second: ~7 MB at `limit=100`.
pub const MAX_PAGES: usize = 64;
/// Longest query string that is cached; longer ones are answered without the cache.
pub const MAX_KEY_BYTES: usize = 512;

#[derive(Default)]
pub struct PageCache {
    inner: Mutex<Pages>,
}

impl std::fmt::Debug for PageCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = self.lock();
        f.debug_struct("PageCache")
            .field("second", &pages.second)
            .field("pages", &pages.by_query.len())
            .finish()
    }
}

#[derive(Default)]
struct Pages {
    second: i64,
    by_query: HashMap<Box<str>, Bytes>,
}

impl PageCache {
    /// The answer to `query` in `second`: the cached one, or the one `build` makes (kept when
    /// there is room). `build` runs outside the lock; two requests that miss at once both
    /// build, and the first one's bytes are kept. An `Err` from `build` is passed on, never
    /// cached.
    pub fn get_or_build<E>(
        &self,
        query: &str,
        second: i64,
        build: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Bytes, E> {
        if query.len() > MAX_KEY_BYTES {
            return build();
        }
        if let Some(hit) = self.lookup(query, second) {
            return Ok(hit);
        }
        let built = build()?;
        let mut pages = self.lock();
        if pages.second != second {
            if second < pages.second {
                // A request from a second already past: answered, not kept.
                return Ok(built);
            }
            pages.second = second;
            pages.by_query.clear();
        }
        if pages.by_query.len() < MAX_PAGES {
            pages
                .by_query
                .entry(query.into())
                .or_insert_with(|| built.clone());
        }
        Ok(built)
    }

    fn lookup(&self, query: &str, second: i64) -> Option<Bytes> {
        let pages = self.lock();
        (pages.second == second)
            .then(|| pages.by_query.get(query).cloned())
            .flatten()
    }

    /// The lock is held for a map look-up or insert only; a panic while holding it cannot
    /// leave the map half-changed, so a poisoned lock is taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, Pages> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(text: &'static str) -> Result<Bytes, ()> {
        Ok(Bytes::from_static(text.as_bytes()))
    }

    #[test]
    fn an_answer_is_shared_within_its_second_only() {
        let cache = PageCache::default();
        assert_eq!(
            cache.get_or_build("limit=100", 10, || built("a")).unwrap(),
            "a"
        );
        let again = cache.get_or_build("limit=100", 10, || panic!("built twice"));
        assert_eq!(again, Ok::<_, ()>(Bytes::from_static(b"a")));
        assert_eq!(
            cache.get_or_build("limit=5", 10, || built("b")).unwrap(),
            "b"
        );
        assert_eq!(
            cache.get_or_build("limit=100", 11, || built("c")).unwrap(),
            "c"
        );
        // A late request of a past second is answered with its own bytes, not kept.
        assert_eq!(
            cache.get_or_build("limit=100", 10, || built("d")).unwrap(),
            "d"
        );
        assert_eq!(
            cache.get_or_build("limit=100", 11, || built("e")).unwrap(),
            "c"
        );
    }

    #[test]
    fn errors_and_overflow_are_never_kept() {
        let cache = PageCache::default();
        assert_eq!(
            cache.get_or_build("bad", 1, || Err::<Bytes, _>("no")),
            Err("no")
        );
        assert_eq!(cache.get_or_build("bad", 1, || built("ok")).unwrap(), "ok");
        for n in 0..MAX_PAGES + 10 {
            let query = format!("skip={n}");
            cache.get_or_build(&query, 1, || built("page")).unwrap();
        }
        let beyond = format!("skip={}", MAX_PAGES + 5);
        assert_eq!(
            cache.get_or_build(&beyond, 1, || built("fresh")).unwrap(),
            "fresh"
        );
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        cache.get_or_build(&long, 1, || built("long")).unwrap();
        assert_eq!(
            cache.get_or_build(&long, 1, || built("again")).unwrap(),
            "again"
        );
    }
}
