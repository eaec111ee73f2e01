//! Answers already serialised for one snapshot, for the rest of the current second, and made
//! ahead for the next.
//!
//! A `/pnodes` answer depends only on the snapshot, the query and the second it is made in
//! (`timestamp` and the snapshot's age are in whole seconds), so every request with the same
//! query in that second gets the same bytes: under load, one page per query and second is
//! walked and serialised (~110 KB at `limit=100`), the others share its bytes. The cache
//! lives in the snapshot's view, so a new cycle starts it empty.
//!
//! A shared answer is also kept gzip-encoded, made by the first request of its second that
//! accepts gzip: ~110 KB of JSON become ~8 KB, which is most of what a request costs the
//! server and its client at thousands of requests a second. Answers made for one request are
//! sent as they are (compressing them per request would cost more than it saves).
//!
//! Made ahead: a page asked for at least [`HOT_HITS`] times in its second is **hot**; the
//! pages' thread (`nodegrid_actors::pnodes::pages`) makes the hot pages of the next second
//! (and gzip-encodes those asked for gzip) before that second starts, below the request
//! threads' priority, and [`PageCache::prepare`] keeps them aside until it does. So under
//! steady load no request waits for a page to be built or compressed (a millisecond or two
//! each, once a second, on a request thread), and a query asked once a minute costs nothing
//! ahead.
//!
//! Bounded against callers that vary the query: at most [`MAX_PAGES`] answers a second (the
//! rest are made per request, as without a cache), as many made ahead, and keys no longer than
//! [`MAX_KEY_BYTES`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;

/// Most answers kept for one second: ~7 MB at `limit=100`.
pub const MAX_PAGES: usize = 64;
/// Longest query string that is cached; longer ones are answered without the cache.
pub const MAX_KEY_BYTES: usize = 512;
/// Requests in one second that make a page hot: made ahead for the next second.
pub const HOT_HITS: u32 = 2;

/// The pages of one snapshot; `R` is what a page answers (the checked request), kept so that
/// the page can be made again for the next second.
pub struct PageCache<R = nodegrid_protocol::pnode_api::queries::PnodesRequest> {
    inner: Mutex<Pages<R>>,
}

impl<R> Default for PageCache<R> {
    fn default() -> PageCache<R> {
        PageCache {
            inner: Mutex::new(Pages {
                second: 0,
                by_query: HashMap::new(),
                ahead: None,
            }),
        }
    }
}

impl<R> std::fmt::Debug for PageCache<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let pages = self.lock();
        f.debug_struct("PageCache")
            .field("second", &pages.second)
            .field("pages", &pages.by_query.len())
            .field("ahead", &pages.ahead.as_ref().map(|(second, _)| *second))
            .finish()
    }
}

type PageMap<R> = HashMap<Box<str>, Arc<Page<R>>>;

struct Pages<R> {
    second: i64,
    by_query: PageMap<R>,
    /// Pages made ahead, and the second they are for.
    ahead: Option<(i64, PageMap<R>)>,
}

/// One answer: its JSON, and for a shared answer its gzip encoding once asked for.
#[derive(Debug)]
pub struct Page<R = nodegrid_protocol::pnode_api::queries::PnodesRequest> {
    json: Bytes,
    /// `None` inside: the answer is not shared, or could not be compressed.
    gzip: OnceLock<Option<Bytes>>,
    /// What a shared page answers (`None`: made for one request).
    answers: Option<R>,
    /// Requests given this page.
    hits: AtomicU32,
    /// Whether one of them asked for it gzip-encoded.
    gzip_asked: AtomicBool,
}

impl<R> Page<R> {
    fn shared(json: Bytes, answers: R) -> Page<R> {
        Page {
            json,
            gzip: OnceLock::new(),
            answers: Some(answers),
            hits: AtomicU32::new(1),
            gzip_asked: AtomicBool::new(false),
        }
    }

    fn single(json: Bytes) -> Page<R> {
        Page {
            json,
            gzip: OnceLock::from(None),
            answers: None,
            hits: AtomicU32::new(1),
            gzip_asked: AtomicBool::new(false),
        }
    }

    /// A page made ahead for `answers`, gzip-encoded now when `gzip`.
    pub fn ahead(json: Bytes, answers: R, gzip: bool) -> Page<R> {
        let page = Page {
            hits: AtomicU32::new(0),
            ..Page::shared(json, answers)
        };
        if gzip {
            page.gzip.get_or_init(|| compress(&page.json));
        }
        page
    }

    pub fn json(&self) -> Bytes {
        self.json.clone()
    }

    /// The answer gzip-encoded, when it is shared: compressed by the first request that asks
    /// unless made ahead (a request asking meanwhile waits for that one, about a millisecond).
    pub fn gzip(&self) -> Option<Bytes> {
        self.gzip_asked.store(true, Ordering::Relaxed);
        self.gzip.get_or_init(|| compress(&self.json)).clone()
    }
}

/// A page to make ahead: its query, what it answers, and whether it is wanted gzip-encoded.
#[derive(Debug, Clone)]
pub struct HotPage<R> {
    pub query: Box<str>,
    pub answers: R,
    pub gzip: bool,
}

/// Compression level 6 (gzip's default): once per query and second, so the ratio counts for
/// more than the time.
fn compress(json: &[u8]) -> Option<Bytes> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(json.len() / 4), Compression::default());
    encoder.write_all(json).ok()?;
    encoder.finish().ok().map(Bytes::from)
}

/// How a page was come by, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Kept from an earlier request of the second, or made ahead.
    Cached,
    /// Made by this request.
    Built,
}

impl<R: Clone> PageCache<R> {
    /// The answer to `query` in `second`: the cached one, or the one `build` makes of `answers`
    /// (kept when there is room). `build` runs outside the lock; two requests that miss at once
    /// both build, and the first one's answer is kept and given to both. An `Err` from `build`
    /// is passed on, never cached.
    pub fn get_or_build<E>(
        &self,
        query: &str,
        second: i64,
        answers: R,
        build: impl FnOnce(R) -> Result<Bytes, E>,
    ) -> Result<(Arc<Page<R>>, Source), E> {
        if query.len() > MAX_KEY_BYTES {
            return build(answers).map(|json| (Arc::new(Page::single(json)), Source::Built));
        }
        if let Some(hit) = self.lookup(query, second) {
            hit.hits.fetch_add(1, Ordering::Relaxed);
            return Ok((hit, Source::Cached));
        }
        let built = build(answers.clone())?;
        let mut pages = self.lock();
        if pages.second != second {
            if second < pages.second {
                // A request from a second already past: answered, not kept.
                return Ok((Arc::new(Page::single(built)), Source::Built));
            }
            pages.turn(second);
        }
        if pages.by_query.len() < MAX_PAGES {
            let kept = pages
                .by_query
                .entry(query.into())
                .or_insert_with(|| Arc::new(Page::shared(built, answers)));
            return Ok((kept.clone(), Source::Built));
        }
        Ok((Arc::new(Page::single(built)), Source::Built))
    }

    fn lookup(&self, query: &str, second: i64) -> Option<Arc<Page<R>>> {
        let mut pages = self.lock();
        if pages.second < second {
            pages.turn(second);
        }
        (pages.second == second)
            .then(|| pages.by_query.get(query).cloned())
            .flatten()
    }

    /// The pages of `second` asked for at least [`HOT_HITS`] times so far.
    pub fn hot(&self, second: i64) -> Vec<HotPage<R>> {
        let pages = self.lock();
        if pages.second != second {
            return Vec::new();
        }
        pages
            .by_query
            .iter()
            .filter(|(_, page)| page.hits.load(Ordering::Relaxed) >= HOT_HITS)
            .filter_map(|(query, page)| {
                Some(HotPage {
                    query: query.clone(),
                    answers: page.answers.clone()?,
                    gzip: page.gzip_asked.load(Ordering::Relaxed),
                })
            })
            .collect()
    }

    /// Whether pages of `second` were made ahead, or requests of it have begun.
    pub fn has(&self, second: i64) -> bool {
        let pages = self.lock();
        pages.second >= second || pages.ahead.as_ref().is_some_and(|(at, _)| *at == second)
    }

    /// Keeps `made` (pages made ahead) for `second`: served from its first request on. Pages
    /// for a second already begun are added where no request has made one; for a later second,
    /// added to those made for it before (pages made ahead for another second are dropped);
    /// for a second past, they are dropped.
    pub fn prepare(&self, second: i64, made: Vec<(Box<str>, Page<R>)>) {
        let mut pages = self.lock();
        if second < pages.second || made.is_empty() {
            return;
        }
        let into = if second == pages.second {
            &mut pages.by_query
        } else {
            match &mut pages.ahead {
                Some((at, made_before)) if *at == second => made_before,
                ahead => &mut ahead.insert((second, HashMap::new())).1,
            }
        };
        for (query, page) in made {
            if into.len() >= MAX_PAGES {
                break;
            }
            into.entry(query).or_insert_with(|| Arc::new(page));
        }
    }
}

impl<R> PageCache<R> {
    /// The lock is held for a map look-up or insert only; a panic while holding it cannot
    /// leave the map half-changed, so a poisoned lock is taken over.
    fn lock(&self) -> std::sync::MutexGuard<'_, Pages<R>> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<R> Pages<R> {
    /// Starts `second`: with the pages made ahead for it, if any.
    fn turn(&mut self, second: i64) {
        self.second = second;
        // The old pages are few (at most `MAX_PAGES`) and mostly shared with requests still
        // sending them; dropping the map here frees only the last shares.
        self.by_query = match self.ahead.take() {
            Some((at, made)) if at == second => made,
            Some(later) if later.0 > second => {
                self.ahead = Some(later);
                HashMap::new()
            }
            _ => HashMap::new(),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built(text: &'static str) -> impl FnOnce(()) -> Result<Bytes, ()> {
        move |()| Ok(Bytes::from_static(text.as_bytes()))
    }

    fn never() -> impl FnOnce(()) -> Result<Bytes, ()> {
        |()| panic!("built, not cached")
    }

    fn json(page: Result<(Arc<Page<()>>, Source), ()>) -> Bytes {
        page.unwrap().0.json()
    }

    #[test]
    fn an_answer_is_shared_within_its_second_only() {
        let cache = PageCache::<()>::default();
        assert_eq!(
            json(cache.get_or_build("limit=100", 10, (), built("a"))),
            "a"
        );
        let (again, source) = cache.get_or_build("limit=100", 10, (), never()).unwrap();
        assert_eq!((again.json(), source), (Bytes::from("a"), Source::Cached));
        assert_eq!(json(cache.get_or_build("limit=5", 10, (), built("b"))), "b");
        assert_eq!(
            json(cache.get_or_build("limit=100", 11, (), built("c"))),
            "c"
        );
        // A late request of a past second is answered with its own bytes, not kept.
        assert_eq!(
            json(cache.get_or_build("limit=100", 10, (), built("d"))),
            "d"
        );
        assert_eq!(
            json(cache.get_or_build("limit=100", 11, (), built("e"))),
            "c"
        );
    }

    #[test]
    fn errors_and_overflow_are_never_kept() {
        let cache = PageCache::<()>::default();
        assert_eq!(
            cache
                .get_or_build("bad", 1, (), |()| Err::<Bytes, _>("no"))
                .unwrap_err(),
            "no"
        );
        assert_eq!(json(cache.get_or_build("bad", 1, (), built("ok"))), "ok");
        for n in 0..MAX_PAGES + 10 {
            let query = format!("skip={n}");
            json(cache.get_or_build(&query, 1, (), built("page")));
        }
        let beyond = format!("skip={}", MAX_PAGES + 5);
        assert_eq!(
            json(cache.get_or_build(&beyond, 1, (), built("fresh"))),
            "fresh"
        );
        let long = "x".repeat(MAX_KEY_BYTES + 1);
        json(cache.get_or_build(&long, 1, (), built("long")));
        assert_eq!(
            json(cache.get_or_build(&long, 1, (), built("again"))),
            "again"
        );
    }

    #[test]
    fn a_shared_answer_is_compressed_once_and_a_single_one_never() {
        let cache = PageCache::<()>::default();
        let text: &'static str = Box::leak("{\"pnodes\":[1,2,3]}".repeat(200).into_boxed_str());
        let (shared, _) = cache.get_or_build("limit=100", 1, (), built(text)).unwrap();
        let gzip = shared.gzip().expect("a shared answer compresses");
        assert!(gzip.len() < text.len() / 10, "{} bytes", gzip.len());
        let mut decoded = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gzip[..]), &mut decoded)
            .unwrap();
        assert_eq!(decoded, text);
        // The next request of the second gets the same compressed bytes, not new ones.
        let (again, _) = cache.get_or_build("limit=100", 1, (), built("x")).unwrap();
        assert_eq!(again.gzip().unwrap().as_ptr(), gzip.as_ptr());
        // A late request's own answer, like any answer made for one request, goes as it is.
        cache.get_or_build("limit=100", 2, (), built("y")).unwrap();
        let (late, _) = cache.get_or_build("limit=100", 1, (), built(text)).unwrap();
        assert_eq!(late.gzip(), None);
    }

    #[test]
    fn hot_pages_made_ahead_are_served_from_the_first_request_of_their_second() {
        let cache = PageCache::<&'static str>::default();
        let build = |answers: &'static str| Ok::<_, ()>(Bytes::from(answers));
        let never = |_: &'static str| -> Result<Bytes, ()> { panic!("built, not made ahead") };
        // Asked twice (once gzip-encoded): hot. Asked once: not.
        cache.get_or_build("limit=100", 5, "page", build).unwrap();
        let (page, _) = cache.get_or_build("limit=100", 5, "page", never).unwrap();
        page.gzip();
        cache.get_or_build("limit=1", 5, "once", build).unwrap();
        let hot = cache.hot(5);
        assert_eq!(hot.len(), 1, "{hot:?}");
        assert_eq!(
            (&*hot[0].query, hot[0].answers, hot[0].gzip),
            ("limit=100", "page", true)
        );
        assert!(cache.hot(4).is_empty(), "only the second asked about");

        assert!(!cache.has(6));
        let made: Vec<_> = hot
            .iter()
            .map(|hot| {
                let json = Bytes::from(format!("{} at 6", hot.answers));
                (hot.query.clone(), Page::ahead(json, hot.answers, hot.gzip))
            })
            .collect();
        cache.prepare(6, made);
        assert!(cache.has(6));
        // Made later for the same second: added to those made before.
        let late = Page::ahead(Bytes::from("late at 6"), "late", false);
        cache.prepare(6, vec![("limit=2".into(), late)]);
        // Still second 5: its own pages are served, the ones made ahead wait.
        let (now, _) = cache.get_or_build("limit=100", 5, "page", never).unwrap();
        assert_eq!(now.json(), "page");
        // Second 6: the first request gets the page made ahead, compressed already.
        let (ahead, source) = cache.get_or_build("limit=100", 6, "page", never).unwrap();
        assert_eq!(
            (ahead.json(), source),
            (Bytes::from("page at 6"), Source::Cached)
        );
        assert!(ahead.gzip.get().is_some_and(Option::is_some));
        let (late, source) = cache.get_or_build("limit=2", 6, "late", never).unwrap();
        assert_eq!(
            (late.json(), source),
            (Bytes::from("late at 6"), Source::Cached)
        );
        // Not hot in 5, not made ahead.
        assert_eq!(
            cache.get_or_build("limit=1", 6, "once", build).unwrap().1,
            Source::Built
        );
        // Pages made for a second already past are dropped.
        cache.prepare(
            5,
            vec![("late".into(), Page::ahead(Bytes::new(), "x", false))],
        );
        assert_eq!(
            cache
                .get_or_build("late", 6, "late", build)
                .unwrap()
                .0
                .json(),
            "late"
        );
    }
}
