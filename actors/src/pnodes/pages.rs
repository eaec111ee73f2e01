//! The pages thread: makes the hot `/api/xandeum/pnodes` pages of the next second before it
//! starts (see `nodegrid_services::pnodes::api::page_cache`), so that under steady load no
//! request waits for a page to be serialised or compressed.
//!
//! It wakes [`AHEAD`] before each second and when the served snapshot is replaced: a new
//! snapshot starts with an empty page cache, so the pages hot in the one it replaced are made
//! for it at once. It looks again [`LATE`] before the second, for pages that became hot after
//! the first look (a client that began asking late in the second: otherwise the first request
//! of its next second would make the page, with the requests behind it waiting). It runs below the request threads (`background::lower_current_thread`);
//! if it is late, requests make their pages as they would without it.

use std::sync::{Arc, Weak};
use std::time::Duration;

use nodegrid_protocol::pnode_api::queries::PnodesRequest;
use nodegrid_services::pnodes::api::nodes::make_pages_ahead;
use nodegrid_services::pnodes::api::page_cache::HotPage;
use nodegrid_services::pnodes::background::lower_current_thread;
use nodegrid_services::pnodes::view::NetworkView;

use super::cell::{CellWatch, SnapshotCell};
use super::metrics::PAGES_MADE;

/// How long before its second a hot page is made.
pub const AHEAD: Duration = Duration::from_millis(250);
/// How long before its second a page that became hot after the first look is made.
pub const LATE: Duration = Duration::from_millis(50);

/// Starts the pages thread of `cell`; it ends when the cell is gone.
pub fn start(cell: &SnapshotCell) {
    let watch = cell.watch();
    let started = std::thread::Builder::new()
        .name("pnode-pages".into())
        .spawn(move || {
            lower_current_thread();
            run(watch);
        });
    if let Err(error) = started {
        tracing::warn!(%error, "cannot start the pNode pages thread; requests make their pages");
    }
}

fn run(watch: CellWatch) {
    let mut ahead = Ahead::default();
    let mut swaps = 0;
    while let Some(view) = watch.view() {
        let wait = ahead.step(&view, chrono::Utc::now().timestamp_millis());
        drop(view);
        swaps = watch.wait_for_swap(swaps, wait);
    }
}

/// What the thread remembers between looks.
#[derive(Default)]
struct Ahead {
    /// The view of the last look.
    view: Weak<NetworkView>,
    /// The pages hot in it when last asked.
    hot: Vec<HotPage<PnodesRequest>>,
    /// The last second pages were made for in `view`, at the first look and at the late one.
    made_for: i64,
    late_for: i64,
}

impl Ahead {
    /// One look at the served view at `now_ms` (Unix milliseconds): makes what is due, and
    /// returns how long to wait for the next look.
    fn step(&mut self, view: &Arc<NetworkView>, now_ms: i64) -> Duration {
        let second = now_ms.div_euclid(1_000);
        let into = Duration::from_millis(u64::try_from(now_ms.rem_euclid(1_000)).unwrap_or(0));
        let due_at = Duration::from_secs(1).saturating_sub(AHEAD);
        let late_at = Duration::from_secs(1).saturating_sub(LATE);
        if view.cycle == 0 {
            return Duration::from_secs(1);
        }
        if !std::ptr::eq(self.view.as_ptr(), Arc::as_ptr(view)) {
            // A new snapshot: its cache is empty; what was hot in the last one is made now
            // (and for the next second too when that is due).
            self.view = Arc::downgrade(view);
            made(make_pages_ahead(view, self.hot.clone(), second));
            (self.made_for, self.late_for) = (0, 0);
            if into >= due_at {
                made(make_pages_ahead(view, self.hot.clone(), second + 1));
                self.made_for = second + 1;
            }
        }
        if into >= due_at && self.made_for <= second {
            self.hot = view.pages.hot(second);
            self.made_for = second + 1;
            made(make_pages_ahead(view, self.hot.clone(), second + 1));
        }
        if into >= late_at && self.late_for <= second {
            self.late_for = second + 1;
            let known = &self.hot;
            let more: Vec<_> = view
                .pages
                .hot(second)
                .into_iter()
                .filter(|page| known.iter().all(|hot| hot.query != page.query))
                .collect();
            if !more.is_empty() {
                self.hot.extend(more.iter().cloned());
                made(make_pages_ahead(view, more, second + 1));
            }
        }
        if into < due_at {
            due_at - into
        } else if into < late_at {
            late_at - into
        } else {
            Duration::from_secs(1) - into + due_at
        }
    }
}

fn made(count: usize) {
    if count > 0 {
        ::metrics::counter!(PAGES_MADE, "by" => "ahead").increment(count as u64);
    }
}

#[cfg(test)]
mod tests {
    use nodegrid_protocol::pnode_api::queries::PnodesQuery;
    use nodegrid_services::pnodes::api::nodes::pnodes_json;
    use nodegrid_services::pnodes::api::page_cache::Source;

    use super::*;

    fn served(cycle: i64) -> Arc<NetworkView> {
        let mut view = NetworkView::default();
        view.cycle = cycle;
        Arc::new(view)
    }

    fn ask(view: &NetworkView, second: i64) -> Source {
        ask_as(view, "limit=100", second)
    }

    /// Asks for the default page under the cache key `query`.
    fn ask_as(view: &NetworkView, query: &str, second: i64) -> Source {
        let request = PnodesQuery::default().check().unwrap();
        view.pages
            .get_or_build(query, second, request, |request| {
                pnodes_json(view, request, second)
            })
            .unwrap()
            .1
    }

    #[test]
    fn a_hot_page_is_made_before_its_second_and_for_a_new_snapshot() {
        let mut ahead = Ahead::default();
        let first = served(1);
        // Early in second 100: nothing is due; the next look is at 750 ms.
        assert_eq!(ahead.step(&first, 100_200), Duration::from_millis(550));
        assert_eq!(ask(&first, 100), Source::Built);
        assert_eq!(ask(&first, 100), Source::Cached);
        assert_eq!(ahead.step(&first, 100_760), Duration::from_millis(190));
        assert!(first.pages.has(101));
        assert_eq!(ahead.step(&first, 100_950), Duration::from_millis(800));
        assert_eq!(ask(&first, 101), Source::Cached, "made ahead");
        // A page asked once is not made again.
        assert_eq!(ahead.step(&first, 101_800), Duration::from_millis(150));
        assert!(!first.pages.has(102));

        // Hot again, then a new snapshot: it starts with the pages hot in the last one.
        ask(&first, 102);
        ask(&first, 102);
        ahead.step(&first, 102_750);
        let second = served(2);
        assert_eq!(ahead.step(&second, 103_100), Duration::from_millis(650));
        assert_eq!(ask(&second, 103), Source::Cached);

        // A page that became hot after the first look is made at the late one.
        assert_eq!(ahead.step(&second, 103_760), Duration::from_millis(190));
        assert_eq!(ask_as(&second, "late", 103), Source::Built);
        assert_eq!(ask_as(&second, "late", 103), Source::Cached);
        assert_eq!(ahead.step(&second, 103_955), Duration::from_millis(795));
        assert_eq!(ask_as(&second, "late", 104), Source::Cached, "made late");
        // Before the first snapshot there is nothing to make.
        assert_eq!(
            Ahead::default().step(&served(0), 103_900),
            Duration::from_secs(1)
        );
    }
}
