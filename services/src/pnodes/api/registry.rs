//! The registry, every known node in address order, one entry of it, and the graveyard: the
//! nodes offline for long.

use nodegrid_protocol::pnode_api::nodes::{
    GraveyardPage, NodeState, RegistryEntryResponse, RegistryPage,
};
use nodegrid_protocol::pnode_api::queries::Page;
use serde_json::value::RawValue;

use super::{UnknownPnode, known_node};
use crate::pnodes::view::NetworkView;

/// A page of the registry, the nodes' JSON as serialised once per snapshot.
pub fn registry_page(view: &NetworkView, page: Page) -> RegistryPage<&RawValue> {
    RegistryPage {
        count: view.nodes.len(),
        skip: page.skip,
        limit: page.limit,
        items: view
            .node_json
            .iter()
            .skip(page.skip)
            .take(page.limit)
            .map(AsRef::as_ref)
            .collect(),
    }
}

pub fn registry_entry(
    view: &NetworkView,
    address: &str,
) -> Result<RegistryEntryResponse, UnknownPnode> {
    let (node, _) = known_node(view, address)?;
    Ok(RegistryEntryResponse {
        entry: node.clone(),
        status: if node.is_online {
            NodeState::Online
        } else {
            NodeState::Offline
        },
        pnode_status: None,
    })
}

/// The nodes offline for at least `days`, longest gone first; `count` is all of them, the
/// page a part.
pub fn graveyard(view: &NetworkView, days: i64, page: Page) -> GraveyardPage<&RawValue> {
    let threshold = days * 86_400;
    let mut dead: Vec<usize> = (0..view.nodes.len())
        .filter(|&i| {
            let node = &view.nodes[i];
            !node.is_online && node.offline_duration.unwrap_or(0) >= threshold
        })
        .collect();
    dead.sort_by_key(|&i| view.nodes[i].last_seen);
    GraveyardPage {
        count: dead.len(),
        threshold_days: days,
        items: dead
            .iter()
            .skip(page.skip)
            .take(page.limit)
            .map(|&i| view.node_json[i].as_ref())
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixture::{entry, gone, view_of};
    use super::*;

    fn addresses(items: &[&RawValue]) -> Vec<String> {
        items
            .iter()
            .map(|json| {
                let node: serde_json::Value = serde_json::from_str(json.get()).expect("JSON");
                node["address"].as_str().unwrap_or_default().to_owned()
            })
            .collect()
    }

    #[test]
    fn the_graveyard_holds_nodes_gone_long_enough_longest_gone_first() {
        let view = view_of(vec![
            entry("10.0.0.1:9001", None, 3),
            gone("10.0.0.2:9001", 4),
            gone("10.0.0.3:9001", 100),
        ]);
        let all = Page {
            limit: 100,
            skip: 0,
        };
        let dead = graveyard(&view, 3, all);
        assert_eq!(dead.count, 2);
        assert_eq!(addresses(&dead.items), ["10.0.0.3:9001", "10.0.0.2:9001"]);
        assert_eq!(graveyard(&view, 90, all).count, 1);
        let second = graveyard(&view, 0, Page { limit: 1, skip: 1 });
        assert_eq!(
            (second.count, addresses(&second.items)),
            (2, vec!["10.0.0.2:9001".to_owned()])
        );
    }

    #[test]
    fn the_registry_pages_every_node_and_shows_one_entry() {
        let view = view_of(vec![
            entry("10.0.0.1:9001", None, 3),
            gone("10.0.0.2:9001", 4),
            entry("10.0.0.3:9001", None, 1),
        ]);
        let page = registry_page(&view, Page { limit: 2, skip: 1 });
        assert_eq!((page.count, page.skip, page.limit), (3, 1, 2));
        assert_eq!(addresses(&page.items), ["10.0.0.2:9001", "10.0.0.3:9001"]);
        let entry = registry_entry(&view, "10.0.0.2:9001").expect("known");
        assert_eq!(entry.status, NodeState::Offline);
        assert_eq!(entry.entry.tier, "offline");
        assert!(registry_entry(&view, "nowhere:1").is_err());
    }
}
