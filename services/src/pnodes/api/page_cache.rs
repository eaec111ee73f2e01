//! Answers already serialised for one snapshot, for the rest of the current second.
//!
//! A `/pnodes` answer depends only on the snapshot, the query and the second it is made in
//! (`timestamp` and the snapshot's age are in whole seconds), so every request with the same
//! query in that second gets the same bytes: under load, one request per query and second
//! walks and serialises the page (~110 KB at `limit=100`), the others share its bytes. The
//! cache lives in the snapshot's view, so a new cycle starts it empty.
//!
//! A shared answer is also kept gzip-encoded, made by the first request of its second that
//! accepts gzip: ~110 KB of JSON become ~15 KB, which is most of what a request costs the
//! server and its client at thousands of requests a second. Answers made for one request are
//! sent as they are (compressing them per request would cost more than it saves).
//!
//! Bounded against callers that vary the query: at most [`MAX_PAGES`] answers a second (the
//! rest are made per request, as without a cache), and keys no longer than [`MAX_KEY_BYTES`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

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
    by_query: HashMap<Box<str>, Arc<Page>>,
}

/// One answer: its JSON, and for a shared answer its gzip encoding once asked for.
#[derive(Debug)]
pub struct Page {
    json: Bytes,
    /// `None` inside: the answer is not shared, or could not be compressed.
    gzip: OnceLock<Option<Bytes>>,
}

impl Page {
    fn shared(json: Bytes) -> Page {
        Page {
            json,
            gzip: OnceLock::new(),
        }
    }

    fn single(json: Bytes) -> Page {
        Page {
            json,
            gzip: OnceLock::from(None),
        }
    }

    pub fn json(&self) -> Bytes {
        self.json.clone()
    }

    /// The answer gzip-encoded, when it is shared: compressed by the first request that asks
    /// (a request asking meanwhile waits for that one, about a millisecond).
    pub fn gzip(&self) -> Option<Bytes> {
        self.gzip.get_or_init(|| gzip(&self.json)).clone()
    }
}

/// Compression level 6 (gzip's default): once per query and second, so the ratio counts for
/// more than the time.
fn gzip(json: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
    encoder.write_all(json).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

impl PageCache {
    /// The answer to `query` in `second`: the cached one, or the one `build` makes (kept when
    /// there is room). `build` runs outside the lock; two requests that miss at once both
    /// build, and the first one's answer is kept and given to both. An `Err` from `build` is
    /// passed on, never cached.
    pub fn get_or_build<E>(
        &self,
        query: &str,
        second: i64,
        build: impl FnOnce() -> Result<Bytes, E>,
    ) -> Result<Arc<Page>, E> {
        if query.len() > MAX_KEY_BYTES {
            return build().map(|json| Arc::new(Page::single(json)));
        }
        if let Some(hit) = self.lookup(query, second) {
            return Ok(hit);
        }
        let built = build()?;
        let mut pages = self.lock();
        if pages.second != second {
            if second < pages.second {
                // A request from a second already past: answered, not kept.
                return Ok(Arc::new(Page::single(built)));
            }
            pages.second = second;
            pages.by_query.clear();
        }
        if pages.by_query.len() < MAX_PAGES {
            let kept = pages
                .by_query
                .entry(query.into())
                .or_insert_with(|| Arc::new(Page::shared(built)));
            return Ok(kept.clone());
        }
        Ok(Arc::new(Page::single(built)))
    }

    fn lookup(&self, query: &str, second: i64) -> Option<Arc<Page>> {
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

    fn json(page: Result<Arc<Page>, ()>) -> Bytes {
        page.unwrap().json()
    }

    #[test]
    fn an_answer_is_shared_within_its_second_only() {
        let cache = PageCache::default();
        assert_eq!(
            json(cache.get_or_build("limit=100", 10, || built("a"))),
            "a"
        );
        let again = cache.get_or_build("limit=100", 10, || -> Result<Bytes, ()> {
            panic!("built twice")
        });
        assert_eq!(json(again), "a");
        assert_eq!(json(cache.get_or_build("limit=5", 10, || built("b"))), "b");
        assert_eq!(
            json(cache.get_or_build("limit=100", 11, || built("c"))),
            "c"
        );
        // A late request of a past second is answered with its own bytes, not kept.
        assert_eq!(
            json(cache.get_or_build("limit=100", 10, || built("d"))),
            "d"
        );
        assert_eq!(
            json(cache.get_or_build("limit=100", 11, || built("e"))),
            "c"
        );
    }

    #[test]
    fn errors_and_overflow_are_never_kept() {
        let cache = PageCache::default();
        assert_eq!(
            cache
                .get_or_build("bad", 1, || Err::<Bytes, _>("no"))
                .unwrap_err(),
            "no"
        );
        assert_eq!(json(cache.get_or_build("bad", 1, || built("ok"))), "ok");
        for n in 0..MAX_PAGES + 10 {
            let query = format!("skip={n}");
            json(cache.get_or_build(&query, 1, || built("page")));
        }
        let beyond = format!("skip={}", MAX_PAGES + 5);
        assert_eq!(
            json(cache.get_or_build(&beyond, 1, || built("fresh"))),
            "fresh"
        );
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        json(cache.get_or_build(&long, 1, || built("long")));
        assert_eq!(
            json(cache.get_or_build(&long, 1, || built("again"))),
            "again"
        );
    }

    #[test]
    fn a_shared_answer_is_compressed_once_and_a_single_one_never() {
        let cache = PageCache::default();
        let text: &'static str = Box::leak("{\"pnodes\":[1,2,3]}".repeat(200).into_boxed_str());
        let shared = cache.get_or_build("limit=100", 1, || built(text)).unwrap();
        let gzip = shared.gzip().expect("a shared answer compresses");
        assert!(gzip.len() < text.len() / 10, "{} bytes", gzip.len());
        let mut decoded = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
        // The next request of the second gets the same compressed bytes, not new ones.
        let again = cache.get_or_build("limit=100", 1, || built("x")).unwrap();
        assert_eq!(again.gzip().unwrap().as_ptr(), gzip.as_ptr());
        // A late request's own answer, like any answer made for one request, goes as it is.
        cache.get_or_build("limit=100", 2, || built("y")).unwrap();
        let late = cache.get_or_build("limit=100", 1, || built(text)).unwrap();
        assert_eq!(late.gzip(), None);
    }
}
