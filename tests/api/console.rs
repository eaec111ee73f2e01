//! The web console: the admin live feed and the disconnect action over the API (two
//! instances), then the console itself in headless Chromium.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nodegrid_clients::pnode_sim::{PnodeSim, Scripted, SimOptions};
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::prpc::METHOD_GET_PODS_WITH_STATS;
use serde_json::{Value, json};

use crate::browser::Browser;
use crate::helpers::{
    PASSWORD, TEST_ADMIN, TEST_ADMIN_PASSWORD, TestApp, eventually, fresh_database, spawn_app,
    spawn_app_with, test_settings,
};
use crate::pnodes::{first_cycle, settings_for};
use crate::ws::{Frame, Token, connect};

/// Every connection `/api/admin/connections` lists on `app`.
async fn listed_connections(app: &TestApp, admin: &str) -> Vec<Value> {
    let view: Value = app
        .get_with("/api/admin/connections", admin)
        .await
        .json()
        .await
        .unwrap();
    view["instances"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|instance| instance["connections"].as_array().unwrap().clone())
        .collect()
}

#[actix_web::test]
async fn an_admin_disconnects_a_socket_held_by_another_instance_without_blocking_its_user() {
    let database = Arc::new(fresh_database().await);
    let settings = test_settings(&database.url);
    let a = spawn_app_with(database.clone(), settings.clone()).await;
    let b = spawn_app_with(database.clone(), settings).await;
    let producer = a.register("far-producer", Role::Producer).await;
    let producer_token = a.login("far-producer", PASSWORD).await.access_token;
    let consumer_token = {
        a.register("far-consumer", Role::Consumer).await;
        a.login("far-consumer", PASSWORD).await.access_token
    };
    let mut socket = connect(&b, "/producer", Token::Header(&producer_token))
        .await
        .unwrap();
    let admin = a.admin_token().await;

    // Instance A lists B's socket (from B's report) with an id.
    let listed = eventually("B's socket in A's list", Duration::from_secs(10), || {
        let (a, admin) = (&a, admin.clone());
        async move {
            listed_connections(a, &admin)
                .await
                .into_iter()
                .find(|connection| connection["username"] == "far-producer")
        }
    })
    .await;
    let id = listed["id"].as_str().unwrap().to_owned();

    // Only admins; an id that is no live socket is 404.
    let delete = |token: String, id: String| {
        let a = &a;
        async move {
            a.http
                .delete(format!("{}/api/admin/connections/{id}", a.address))
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
        }
    };
    let refused = delete(consumer_token.clone(), id.clone()).await;
    assert_eq!(refused.status(), 403);
    let unknown = delete(admin.clone(), uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().await.unwrap()["code"], "not_found");

    let answer = delete(admin.clone(), id.clone()).await;
    assert_eq!(answer.status(), 202);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["username"], "far-producer");
    assert_eq!(body["kind"], "producer");
    assert_eq!(body["instance"], listed["instance"]);
    // B closes it with 4005; the user is not blocked and connects again.
    loop {
        match socket.next().await {
            Frame::Closed { code, reason } => {
                assert_eq!((code, reason.as_str()), (4005, "disconnected"));
                break;
            }
            _ => continue,
        }
    }
    let mut again = connect(&b, "/producer", Token::Header(&producer_token))
        .await
        .unwrap();
    again
        .send_json(&json!({"type": "data", "payload": {"back": true}}))
        .await;
    assert_eq!(again.next().await.value()["type"], "ack");
    let audit = a.audit("action=connection.disconnect").await;
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["target"], format!("user:{}", producer.user_id));
    assert_eq!(audit[0]["details"]["connection_id"], id.as_str());
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_admin_feed_pushes_the_overview_and_connections_to_admins_only() {
    let app = spawn_app().await;
    app.register("feed-producer", Role::Producer).await;
    app.register("feed-consumer", Role::Consumer).await;
    let producer = app.login("feed-producer", PASSWORD).await;
    let consumer = app.login("feed-consumer", PASSWORD).await;
    assert_eq!(
        connect(
            &app,
            "/api/admin/live",
            Token::Query(&consumer.access_token)
        )
        .await
        .err(),
        Some(403)
    );
    assert_eq!(
        connect(&app, "/api/admin/live", Token::Query("not-a-token"))
            .await
            .err(),
        Some(401)
    );
    let admin = app.admin_token().await;
    let mut feed = connect(&app, "/api/admin/live", Token::Query(&admin))
        .await
        .unwrap();
    let overview = feed.next().await.value().clone();
    assert_eq!(overview["type"], "overview", "{overview}");
    assert_eq!(overview["instances"].as_array().unwrap().len(), 1);
    assert_eq!(overview["producers"], 0);
    assert!(overview["registry"].is_object(), "{overview}");
    assert!(overview["pnodes"].is_null(), "no pNode cycle without seeds");
    assert_eq!(feed.next().await.value()["type"], "connections");

    // A producer connects and publishes: the feed lists it and its messages show as a rate.
    let mut socket = connect(&app, "/producer", Token::Header(&producer.access_token))
        .await
        .unwrap();
    for n in 0..20 {
        socket
            .send_json(&json!({"type": "data", "payload": {"n": n}}))
            .await;
        assert_eq!(socket.next().await.value()["type"], "ack");
    }
    let (mut listed, mut rate) = (false, false);
    for _ in 0..10 {
        let message = feed.next().await.value().clone();
        match message["type"].as_str() {
            Some("overview") => rate |= message["messages_in_per_sec"].as_f64().unwrap() > 0.0,
            Some("connections") => {
                listed |= message["instances"][0]["connections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|connection| connection["username"] == "feed-producer");
                assert_eq!(message["truncated"], false);
            }
            other => panic!("unexpected message {other:?}"),
        }
        if listed && rate {
            break;
        }
    }
    assert!(listed && rate, "listed {listed}, rate {rate}");
    let totals: Value = app
        .get_with("/api/admin/connections", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert!(
        totals["instances"][0]["messages_in_total"]
            .as_u64()
            .unwrap()
            >= 20
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn users_are_searched_by_part_of_their_name_in_any_case() {
    let app = spawn_app().await;
    for name in ["Sensor-North", "sensor-south", "gateway-1"] {
        app.register(name, Role::Producer).await;
    }
    let admin = app.admin_token().await;
    let page: Value = app
        .get_with("/api/admin/users?search=SENSOR&per_page=10", &admin)
        .await
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|user| user["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Sensor-North", "sensor-south"]);
    assert_eq!(page["total"], 2);
    // A LIKE pattern is plain text here.
    let none: Value = app
        .get_with("/api/admin/users?search=%25", &admin)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["total"], 0);
    let long = "x".repeat(201);
    let refused = app
        .get_with(&format!("/api/admin/users?search={long}"), &admin)
        .await;
    assert_eq!(refused.status(), 400);
    app.shut_down().await.unwrap();
}

const UP: &str = "10.9.0.1:9001";
const LEAVING: &str = "10.9.0.2:9001";

fn pods(addresses: &[&str]) -> Scripted {
    let pods: Vec<Value> = addresses
        .iter()
        .map(|address| {
            json!({"address": address, "uptime": 864_000, "is_public": true, "version": "0.8.0",
                   "pubkey": format!("key-{address}"), "storage_committed": 1u64 << 40,
                   "storage_used": 1u64 << 39})
        })
        .collect();
    Scripted::Result(json!({"pods": pods}))
}

/// Waits until no element matches `selector` (as the page shows it now).
fn gone(selector: &str) -> String {
    format!("!document.querySelector({})", json!(selector))
}

/// The text of the first element matching `selector`.
fn text_of(selector: &str) -> String {
    format!("document.querySelector({}).textContent", json!(selector))
}

#[actix_web::test]
async fn the_console_runs_every_page_in_a_real_browser() {
    let sim = PnodeSim::start(SimOptions {
        seeds: 1,
        pods: 0,
        ..SimOptions::default()
    })
    .unwrap();
    sim.script(0, METHOD_GET_PODS_WITH_STATS, pods(&[UP, LEAVING]));
    let database = Arc::new(fresh_database().await);
    let mut settings = settings_for(&database, &sim);
    // One-second cycles: a node out of gossip is offline two seconds later.
    settings.pnodes.interval = Duration::from_secs(1);
    let app = spawn_app_with(database.clone(), settings).await;
    first_cycle(&app).await;
    app.register("console-producer", Role::Producer).await;
    app.register("console-consumer", Role::Consumer).await;
    let producer_id = app
        .login("console-producer", PASSWORD)
        .await
        .user_id
        .to_string();

    let Some(mut browser) = Browser::launch(1280, 800).await else {
        app.shut_down().await.unwrap();
        sim.stop().await;
        return;
    };
    let console = format!("{}/console", app.address);
    browser.goto(&console).await;

    // A wrong password is refused on the page; the right one signs in to the overview.
    browser.fill("input[name=username]", TEST_ADMIN).await;
    browser.fill("input[name=password]", "wrong-password").await;
    browser
        .click("form[aria-label='Sign in'] button[type=submit]")
        .await;
    let refused = browser
        .wait_for(
            "the refusal",
            "document.querySelector('.error') && document.querySelector('.error').textContent",
        )
        .await;
    assert!(
        refused.as_str().unwrap().contains("invalid_credentials"),
        "{refused}"
    );
    browser
        .fill("input[name=password]", TEST_ADMIN_PASSWORD)
        .await;
    browser
        .click("form[aria-label='Sign in'] button[type=submit]")
        .await;
    browser
        .wait_for(
            "the overview's live cards",
            "document.querySelector('[data-card=instances] .value') && document.querySelector('[data-card=instances] .value').textContent === '1' && document.querySelector('[data-card=pnodes] .value').textContent.includes('/')",
        )
        .await;
    browser.screenshot("overview").await;
    // The keyboard reaches the pages: past the skip link, the first page's link, then the next.
    browser.press("Tab").await;
    browser.press("Tab").await;
    let focused = browser.eval("document.activeElement.textContent").await;
    assert_eq!(focused, "Overview");
    browser.press("Tab").await;
    browser.press("Enter").await;
    browser
        .wait_for(
            "the streams page by keyboard",
            "location.hash === '#/streams' && document.querySelector('#producer-tester')",
        )
        .await;

    // Streams: the producer tester's frames reach the consumer tester, JSON and MessagePack.
    browser.goto(&format!("{console}#/streams")).await;
    let producer = "#producer-tester";
    let consumer = "#consumer-tester";
    browser
        .fill(
            &format!("{producer} input[name=username]"),
            "console-producer",
        )
        .await;
    browser
        .fill(&format!("{producer} input[name=password]"), PASSWORD)
        .await;
    browser
        .click(&format!("{producer} form button[type=submit]"))
        .await;
    browser
        .fill(
            &format!("{consumer} input[name=username]"),
            "console-consumer",
        )
        .await;
    browser
        .fill(&format!("{consumer} input[name=password]"), PASSWORD)
        .await;
    browser
        .click(&format!("{consumer} form button[type=submit]"))
        .await;
    browser
        .wait_for(
            "both testers connected",
            &format!(
                "{} .includes('connected as') && {} .includes('connected as')",
                text_of("[data-state=Producer]"),
                text_of("[data-state=Consumer]")
            ),
        )
        .await;
    browser
        .fill(&format!("{consumer} input[name=producer]"), &producer_id)
        .await;
    browser
        .click(&format!(
            "{consumer} form[aria-label=Subscriptions] button[type=submit]"
        ))
        .await;
    browser
        .wait_for(
            "the subscription",
            &format!("{}.includes('subscribed')", text_of("[data-log=Consumer]")),
        )
        .await;
    browser
        .fill(
            &format!("{producer} textarea[name=payload]"),
            r#"{"reading": 42}"#,
        )
        .await;
    browser
        .click(&format!(
            "{producer} form[aria-label='Send a frame'] button[type=submit]"
        ))
        .await;
    browser
        .wait_for(
            "the ack",
            &format!("{}.includes('ack seq 1')", text_of("[data-log=Producer]")),
        )
        .await;
    browser
        .wait_for(
            "the delivery",
            &format!(
                "{}.includes('seq 1: {{\"reading\":42}}')",
                text_of("[data-log=Consumer]")
            ),
        )
        .await;
    browser
        .eval(&format!(
            "document.querySelector('{producer} select[name=encoding]').value = 'msgpack'"
        ))
        .await;
    browser
        .fill(
            &format!("{producer} textarea[name=payload]"),
            r#"{"reading": 43}"#,
        )
        .await;
    browser
        .click(&format!(
            "{producer} form[aria-label='Send a frame'] button[type=submit]"
        ))
        .await;
    browser
        .wait_for(
            "the MessagePack ack",
            &format!("{}.includes('ack seq 2')", text_of("[data-log=Producer]")),
        )
        .await;
    browser
        .wait_for(
            "the second delivery",
            &format!(
                "{}.includes('seq 2: {{\"reading\":43}}')",
                text_of("[data-log=Consumer]")
            ),
        )
        .await;
    // Resuming after seq 0 brings both messages again, from the producer's history.
    browser
        .fill(&format!("{consumer} input[name=since]"), "0")
        .await;
    browser
        .click(&format!("{consumer} button[name=resume]"))
        .await;
    browser
        .wait_for(
            "the replay",
            &format!(
                "{}.split('seq 1: {{\"reading\":42}}').length === 3",
                text_of("[data-log=Consumer]")
            ),
        )
        .await;
    // A frame that is not JSON is stopped on the page, with a clear error.
    browser
        .fill(&format!("{producer} textarea[name=payload]"), "{not json")
        .await;
    browser
        .click(&format!(
            "{producer} form[aria-label='Send a frame'] button[type=submit]"
        ))
        .await;
    browser
        .wait_for(
            "the payload error",
            &format!(
                "{}.includes('bad_payload')",
                text_of(&format!("{producer} .error"))
            ),
        )
        .await;

    // Both sockets are listed live; blocking the consumer takes its connection away.
    let row = "#connections tr[data-user=console-consumer]";
    browser
        .wait_for(
            "the consumer's connection",
            &format!("document.querySelector({})", json!(row)),
        )
        .await;
    browser
        .wait_for(
            "the producer's connection",
            "document.querySelector('#connections tr[data-user=console-producer]')",
        )
        .await;
    browser.screenshot("streams").await;
    browser.click(&format!("{row} button.danger")).await;
    // An empty reason is the server's validation error, shown on the page.
    browser
        .click(&format!("{row} form button[type=submit]"))
        .await;
    let invalid = browser
        .wait_for("the validation error", "document.querySelector('#connections .error') && document.querySelector('#connections .error').textContent")
        .await;
    assert!(
        invalid.as_str().unwrap().contains("validation_failed"),
        "{invalid}"
    );
    browser
        .fill(&format!("{row} input[name=reason]"), "testing the console")
        .await;
    browser
        .click(&format!("{row} form button[type=submit]"))
        .await;
    browser
        .wait_for("the blocked user's connection to go", &gone(row))
        .await;
    browser
        .wait_for(
            "the consumer tester's close",
            &format!("{}.includes('closed 4003')", text_of("[data-log=Consumer]")),
        )
        .await;
    // Disconnecting the producer closes its socket without blocking it.
    browser
        .click("#connections tr[data-user=console-producer] button")
        .await;
    browser
        .wait_for(
            "the producer's connection to go",
            &gone("#connections tr[data-user=console-producer]"),
        )
        .await;
    browser
        .wait_for(
            "the producer tester's close",
            &format!("{}.includes('closed 4005')", text_of("[data-log=Producer]")),
        )
        .await;

    // Users & audit: the block is there, and searching narrows the list.
    browser.goto(&format!("{console}#/users")).await;
    browser
        .wait_for(
            "the blocked consumer",
            "document.querySelector('#users tr[data-user=console-consumer] .badge.blocked')",
        )
        .await;
    browser.fill("#users input[name=search]", "CONSOLE-").await;
    browser.click("#users form button[type=submit]").await;
    browser
        .wait_for(
            "the search",
            "document.querySelectorAll('#users tbody tr').length === 2",
        )
        .await;
    browser
        .wait_for(
            "the audit entry",
            &format!("{}.includes('user.block')", text_of("#audit tbody")),
        )
        .await;
    browser.screenshot("users").await;

    // pNodes: a node that leaves gossip turns offline in the table by itself.
    browser.goto(&format!("{console}#/pnodes")).await;
    let leaving = format!("#pnode-table tr[data-address='{LEAVING}']");
    browser.wait_for("the leaving node online", &format!("document.querySelector(\"{leaving}\") && document.querySelector(\"{leaving}\").dataset.online === 'true'")).await;
    browser
        .wait_for(
            "the live pNode socket",
            "document.querySelector('[data-live=yes]')",
        )
        .await;
    browser
        .wait_for(
            "the topology",
            "document.querySelector('svg.topology circle')",
        )
        .await;
    browser.screenshot("pnodes").await;
    sim.script(0, METHOD_GET_PODS_WITH_STATS, pods(&[UP]));
    browser.wait_for("the leaving node offline", &format!("document.querySelector(\"{leaving}\") && document.querySelector(\"{leaving}\").dataset.online === 'false'")).await;
    // A filter out of range is the API's validation error, on the page.
    browser.fill("input[name=min_score]", "500").await;
    browser
        .click("form[aria-label='Filter pNodes'] button[type=submit]")
        .await;
    browser
        .wait_for(
            "the filter error",
            &format!("{}.includes('validation_failed')", text_of("main .error")),
        )
        .await;
    browser.goto(&format!("{console}#/pnodes/{UP}")).await;
    browser
        .wait_for(
            "the score breakdown",
            "document.querySelector('#score-breakdown .bars')",
        )
        .await;
    browser.screenshot("pnode-detail").await;
    browser
        .goto(&format!("{console}#/compare/{UP},{LEAVING}"))
        .await;
    browser
        .wait_for(
            "the comparison",
            "document.querySelectorAll('main table th').length >= 3",
        )
        .await;
    browser.screenshot("pnode-compare").await;

    // Registry: the pNodes and the device are there, with the live event log.
    browser.goto(&format!("{console}#/registry")).await;
    browser
        .wait_for(
            "the registry's nodes",
            "document.querySelectorAll('main tbody tr').length >= 3",
        )
        .await;
    browser
        .wait_for(
            "the registry's live events",
            "document.querySelector('[data-live=yes]')",
        )
        .await;
    browser.screenshot("registry").await;
    // Children: a client's child listed live; a second provisioned from the page shows its key
    // once; maintenance switched on from the page.
    let admin = app.admin_token().await;
    let client = crate::children::client_with_plan(&app, &admin, "console-client", 3).await;
    crate::children::provision(&app, &admin, client, "console-child-1").await;
    browser.goto(&format!("{console}#/children")).await;
    browser
        .wait_for(
            "the child's row",
            "document.querySelector('#children tr[data-child=console-child-1] .badge')",
        )
        .await;
    browser
        .wait_for(
            "the client choice",
            "document.querySelector('form[aria-label=\"Provision a child\"] select[name=client_id] option')",
        )
        .await;
    browser
        .fill(
            "form[aria-label='Provision a child'] input[name=name]",
            "console-child-2",
        )
        .await;
    browser
        .click("form[aria-label='Provision a child'] button[type=submit]")
        .await;
    let key = browser
        .wait_for(
            "the new key, shown once",
            "document.querySelector('#child-key code.secret') && document.querySelector('#child-key code.secret').textContent",
        )
        .await;
    assert!(key.as_str().unwrap().starts_with("ngc_"), "{key}");
    browser
        .wait_for(
            "the new child's row",
            "document.querySelector('#children tr[data-child=console-child-2]')",
        )
        .await;
    browser
        .eval("document.querySelector('form[aria-label=Maintenance] input[name=enabled]').checked = true")
        .await;
    browser
        .fill(
            "form[aria-label=Maintenance] input[name=message]",
            "upgrading",
        )
        .await;
    browser
        .click("form[aria-label=Maintenance] button[type=submit]")
        .await;
    eventually("maintenance on", Duration::from_secs(5), || async {
        let view: Value = app
            .get_with("/api/admin/maintenance", &admin)
            .await
            .json()
            .await
            .ok()?;
        (view["enabled"] == true && view["message"] == "upgrading").then_some(())
    })
    .await;
    browser.screenshot("children").await;

    // Every control has a label; at phone width nothing overflows sideways.
    for page in [
        "overview", "streams", "users", "pnodes", "registry", "children",
    ] {
        browser.goto(&format!("{console}#/{page}")).await;
        browser
            .wait_for("the page", "document.querySelector('main h1')")
            .await;
        let unlabelled = browser
            .eval(
                "[...document.querySelectorAll('input, select, textarea, button')].filter((e) => !e.closest('label') && !e.getAttribute('aria-label') && !e.textContent.trim()).map((e) => e.outerHTML)",
            )
            .await;
        assert_eq!(unlabelled, json!([]), "unlabelled controls on {page}");
    }
    browser.viewport(390, 844, true).await;
    browser.goto(&format!("{console}#/overview")).await;
    browser
        .wait_for(
            "the overview at phone width",
            "document.querySelector('[data-card=instances]')",
        )
        .await;
    let overflow = browser
        .eval("document.documentElement.scrollWidth - window.innerWidth")
        .await;
    assert!(
        overflow.as_i64().unwrap() <= 1,
        "the page is {overflow} px too wide"
    );
    browser.screenshot("overview-phone").await;
    browser.viewport(1280, 800, false).await;

    // Logging out ends the session: back to the sign-in form.
    browser.click("#logout").await;
    browser
        .wait_for(
            "the sign-in form",
            "document.querySelector(\"form[aria-label='Sign in']\")",
        )
        .await;
    assert!(
        browser.errors.is_empty(),
        "the page had errors: {:?}",
        browser.errors
    );
    drop(browser);
    app.shut_down().await.unwrap();
    sim.stop().await;
}

#[actix_web::test]
async fn the_console_refreshes_its_token_and_its_live_feed_carries_on() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    // Access tokens that expire every few seconds: the feed closes with 4001 each time.
    settings.access_token_ttl = Duration::from_secs(3);
    let app = spawn_app_with(database, settings).await;
    let Some(mut browser) = Browser::launch(1280, 800).await else {
        app.shut_down().await.unwrap();
        return;
    };
    browser.goto(&format!("{}/console", app.address)).await;
    browser.fill("input[name=username]", TEST_ADMIN).await;
    browser
        .fill("input[name=password]", TEST_ADMIN_PASSWORD)
        .await;
    browser
        .click("form[aria-label='Sign in'] button[type=submit]")
        .await;
    browser
        .wait_for("the live feed", "document.querySelector('[data-live=yes]')")
        .await;
    // The feed closes with 4001 as each token expires; the page refreshes (each refresh token
    // spent once, or the server would end the session) and opens it again.
    eventually("two refreshes", Duration::from_secs(30), || {
        let app = &app;
        async move { (app.audit("action=auth.refresh").await.len() >= 2).then_some(()) }
    })
    .await;
    browser.wait_for("the live feed again", "document.querySelector('[data-live=yes]') && document.querySelector('[data-card=instances]')").await;
    browser
        .goto(&format!("{}/console#/users", app.address))
        .await;
    browser
        .wait_for(
            "an admin page after the refreshes",
            "document.querySelector('#users tbody tr')",
        )
        .await;
    assert!(
        browser.errors.is_empty(),
        "the page had errors: {:?}",
        browser.errors
    );
    assert!(
        app.audit("action=auth.refresh_reuse").await.is_empty(),
        "a refresh token was presented twice"
    );
    drop(browser);
    app.shut_down().await.unwrap();
}

/// `NODEGRID_BLESS_SCREENSHOTS=1 cargo test -p nodegrid --test api readme_screenshots` takes the
/// README's console images (`docs/images/`) against a demo network and live streams; without
/// the variable it does nothing.
#[actix_web::test]
async fn readme_screenshots() {
    if std::env::var_os("NODEGRID_BLESS_SCREENSHOTS").is_none() {
        return;
    }
    let sim = PnodeSim::start(SimOptions {
        seeds: 9,
        pods: 300,
        round_secs: 1,
        ..SimOptions::default()
    })
    .unwrap();
    let database = Arc::new(fresh_database().await);
    let mut settings = settings_for(&database, &sim);
    settings.pnodes.interval = Duration::from_secs(1);
    let app = spawn_app_with(database.clone(), settings).await;
    first_cycle(&app).await;
    // Streams: 8 producers publishing to 24 consumers, for as long as the pictures take.
    let mut producers = Vec::new();
    let mut consumers = Vec::new();
    for n in 0..8 {
        let name = format!("sensor-{n:02}");
        app.register(&name, Role::Producer).await;
        let token = app.login(&name, PASSWORD).await;
        producers.push((
            token.user_id,
            connect(&app, "/producer", Token::Header(&token.access_token))
                .await
                .unwrap(),
        ));
    }
    for n in 0..24 {
        let name = format!("dashboard-{n:02}");
        app.register(&name, Role::Consumer).await;
        let token = app.login(&name, PASSWORD).await;
        let mut socket = connect(&app, "/consumer", Token::Header(&token.access_token))
            .await
            .unwrap();
        for (producer, _) in producers.iter().skip(n % 4).step_by(4) {
            socket
                .send_json(&json!({"type": "subscribe", "producer_id": producer}))
                .await;
        }
        consumers.push(socket);
    }
    let publishing = actix_web::rt::spawn(async move {
        let mut reading = 0u64;
        loop {
            for (_, socket) in &mut producers {
                reading += 1;
                socket
                    .send_json(&json!({"type": "data", "payload": {"reading": reading}}))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let draining = actix_web::rt::spawn(async move {
        loop {
            for socket in &mut consumers {
                while socket.next_within(Duration::from_millis(1)).await.is_some() {}
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let Some(mut browser) = Browser::launch(1280, 800).await else {
        panic!("the screenshots need chromium");
    };
    let console = format!("{}/console", app.address);
    browser.goto(&console).await;
    browser.fill("input[name=username]", TEST_ADMIN).await;
    browser
        .fill("input[name=password]", TEST_ADMIN_PASSWORD)
        .await;
    browser
        .click("form[aria-label='Sign in'] button[type=submit]")
        .await;
    // A minute of rates for the chart.
    browser
        .wait_for("a minute of the feed", "document.querySelectorAll('svg.chart polyline').length === 2 && document.querySelector('[data-card=messages] .value').textContent !== '0.0'")
        .await;
    tokio::time::sleep(Duration::from_secs(40)).await;
    let images = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("console-overview.png"), browser.png().await).unwrap();
    browser.goto(&format!("{console}#/pnodes")).await;
    browser
        .wait_for(
            "the topology",
            "document.querySelector('svg.topology circle')",
        )
        .await;
    std::fs::write(images.join("console-pnodes.png"), browser.png().await).unwrap();
    publishing.abort();
    draining.abort();
    drop(browser);
    app.shut_down().await.unwrap();
    sim.stop().await;
}
