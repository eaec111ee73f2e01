//! The node registry: REST and gRPC on one store, its events across instances, resume with
//! `since`, device nodes following producer sockets, operator tokens, the CLI.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fred::interfaces::LuaInterface as _;
use nodegrid_clients::nodes::service::node_service_client::NodeServiceClient;
use nodegrid_protocol::auth::Role;
use nodegrid_protocol::registry::grpc;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::helpers::{
    TestApp, eventually, fresh_database, spawn_app, spawn_app_with, test_settings,
};
use crate::streaming::user;
use crate::ws::{Frame, Token, connect};

async fn send(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app.http.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let (status, node) = send(
        app,
        reqwest::Method::POST,
        "/api/nodes",
        Some(token),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{node}");
    node
}

async fn operator_token(app: &TestApp, admin: &str, scopes: Value) -> (i64, String) {
    let (status, body) = send(
        app,
        reqwest::Method::POST,
        "/api/admin/operator-tokens",
        Some(admin),
        Some(json!({"name": "sensor fleet", "scopes": scopes})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_i64().unwrap(),
        body["token"].as_str().unwrap().to_owned(),
    )
}

async fn grpc_client(app: &TestApp) -> NodeServiceClient<Channel> {
    NodeServiceClient::connect(format!("http://127.0.0.1:{}", app.grpc_port))
        .await
        .unwrap()
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The next registry event on a watch socket.
async fn next_event(socket: &mut crate::ws::Ws) -> Value {
    match socket.next().await {
        Frame::Json(event) => event,
        other => panic!("expected an event, got {other:?}"),
    }
}

#[actix_web::test]
async fn rest_changes_are_validated_authorized_and_audited() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, consumer) = user(&app, "node-reader", Role::Consumer).await;

    let node = create(
        &app,
        &admin,
        json!({"type": "VM", "name": "web-01", "labels": {"env": "prod"}, "metadata": {"cpu": 8}}),
    )
    .await;
    assert_eq!(node["type"], "VM");
    assert_eq!(node["status"], "UNKNOWN");
    assert_eq!(node["revision"], 1);
    let id = node["id"].as_str().unwrap().to_owned();

    // Validation: a bad type, a bad status, a blank name, a duplicate name within a type, an
    // unknown id, a bad label selector, a bad page token.
    for (body, expected) in [
        (json!({"type": "MAINFRAME", "name": "x"}), 400),
        (
            json!({"type": "VM", "name": "x", "status": "SIDEWAYS"}),
            400,
        ),
        (json!({"type": "VM", "name": "  "}), 400),
        (json!({"type": "VM", "name": "web-01"}), 409),
        (
            json!({"type": "VM", "name": "x", "labels": {"bad key": "v"}}),
            400,
        ),
    ] {
        let (status, error) = send(
            &app,
            reqwest::Method::POST,
            "/api/nodes",
            Some(&admin),
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, expected, "{body} → {error}");
        assert!(error["code"].is_string(), "{error}");
    }
    // The same name under another type is another node.
    create(&app, &admin, json!({"type": "CONTAINER", "name": "web-01"})).await;
    let unknown = uuid::Uuid::new_v4();
    let (status, error) = send(
        &app,
        reqwest::Method::GET,
        &format!("/api/nodes/{unknown}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (404, Some("not_found")));
    for query in [
        "label=env",
        "type=MAINFRAME",
        "page_token=nope",
        "page_size=5000",
    ] {
        let (status, error) = send(
            &app,
            reqwest::Method::GET,
            &format!("/api/nodes?{query}"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {error}");
        assert_eq!(error["code"], "validation_failed");
    }

    // Authorization: none → 401; a consumer reads but may not write; an operator token with
    // nodes:write writes, one with nodes:read only reads; a revoked one is refused.
    let (status, _) = send(&app, reqwest::Method::GET, "/api/nodes", None, None).await;
    assert_eq!(status, 401);
    let (status, _) = send(
        &app,
        reqwest::Method::GET,
        "/api/nodes",
        Some(&consumer),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, error) = send(
        &app,
        reqwest::Method::PUT,
        &format!("/api/nodes/{id}/status"),
        Some(&consumer),
        Some(json!({"status": "DOWN"})),
    )
    .await;
    assert_eq!((status, error["code"].as_str()), (403, Some("forbidden")));
    let (writer_id, writer) = operator_token(&app, &admin, json!(["nodes:write"])).await;
    let (_, reader) = operator_token(&app, &admin, json!(["nodes:read"])).await;
    let (status, updated) = send(
        &app,
        reqwest::Method::PUT,
        &format!("/api/nodes/{id}/status"),
        Some(&writer),
        Some(json!({"status": "UP"})),
    )
    .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(updated["status"], "UP");
    assert_eq!(updated["revision"], 2);
    assert!(updated["last_seen"].is_string());
    let (status, _) = send(
        &app,
        reqwest::Method::GET,
        &format!("/api/nodes/{id}"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/nodes/{id}"),
        Some(&reader),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, body) = send(
        &app,
        reqwest::Method::POST,
        "/api/admin/operator-tokens",
        Some(&admin),
        Some(json!({"name": "too much", "scopes": ["publish"]})),
    )
    .await;
    assert_eq!(status, 400, "{body}");

    // PATCH replaces the fields it names; labels as a whole map. A PATCH that changes nothing
    // is no change.
    let (status, patched) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/nodes/{id}"),
        Some(&writer),
        Some(json!({"labels": {"tier": "web"}, "name": "web-01a"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["labels"], json!({"tier": "web"}));
    assert_eq!(patched["name"], "web-01a");
    assert_eq!(patched["metadata"], json!({"cpu": 8}));
    let (_, same) = send(
        &app,
        reqwest::Method::PATCH,
        &format!("/api/nodes/{id}"),
        Some(&writer),
        Some(json!({"labels": {"tier": "web"}})),
    )
    .await;
    assert_eq!(same["revision"], patched["revision"]);

    // The audit names the token masked, the node and the changed fields.
    let audit = app.audit_with(&admin, "action=node.update").await;
    let masked = format!("token:****{}", &writer[writer.len() - 4..]);
    assert!(
        audit.iter().any(|entry| entry["actor"] == masked.as_str()
            && entry["target"] == format!("node:{id}")
            && entry["details"]["changed_fields"] == json!(["name", "labels"])),
        "{audit:?}"
    );
    assert!(!serde_json::to_string(&audit).unwrap().contains(&writer));

    // Revoked: refused everywhere.
    let (status, _) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/admin/api-tokens/{writer_id}"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, error) = send(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/nodes/{id}"),
        Some(&writer),
        None,
    )
    .await;
    assert_eq!(
        (status, error["code"].as_str()),
        (401, Some("token_invalid"))
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn grpc_serves_the_same_registry_with_its_errors_and_stable_pages() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, consumer) = user(&app, "grpc-reader", Role::Consumer).await;
    let mut client = grpc_client(&app).await;
    let node = |name: &str, kind: grpc::NodeType| grpc::Node {
        r#type: kind as i32,
        name: name.to_owned(),
        labels: [("env".to_owned(), "prod".to_owned())]
            .into_iter()
            .collect(),
        metadata_json: r#"{"rack": 4}"#.to_owned(),
        ..grpc::Node::default()
    };

    // Mutations: none, a consumer → refused.
    let refused = client
        .create_node(tonic::Request::new(grpc::CreateNodeRequest {
            node: Some(node("a", grpc::NodeType::Vm)),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = client
        .create_node(authorized(
            grpc::CreateNodeRequest {
                node: Some(node("a", grpc::NodeType::Vm)),
            },
            &consumer,
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let created = client
        .create_node(authorized(
            grpc::CreateNodeRequest {
                node: Some(node("grpc-01", grpc::NodeType::Baremetal)),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.r#type, grpc::NodeType::Baremetal as i32);
    assert_eq!(created.status, grpc::NodeStatus::Unknown as i32);
    let duplicate = client
        .create_node(authorized(
            grpc::CreateNodeRequest {
                node: Some(node("grpc-01", grpc::NodeType::Baremetal)),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(duplicate.code(), tonic::Code::AlreadyExists);
    let untyped = client
        .create_node(authorized(
            grpc::CreateNodeRequest {
                node: Some(node("x", grpc::NodeType::Unspecified)),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(untyped.code(), tonic::Code::InvalidArgument);
    let missing = client
        .get_node(authorized(
            grpc::GetNodeRequest {
                id: uuid::Uuid::new_v4().to_string(),
            },
            &consumer,
        ))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    let bad_selector = client
        .list_nodes(authorized(
            grpc::ListNodesRequest {
                label_selector: "env".into(),
                ..grpc::ListNodesRequest::default()
            },
            &consumer,
        ))
        .await
        .unwrap_err();
    assert_eq!(bad_selector.code(), tonic::Code::InvalidArgument);

    // UpdateNode with a field mask.
    let mut change = created.clone();
    change.status = grpc::NodeStatus::Degraded as i32;
    change.name = "not applied".into();
    let updated = client
        .update_node(authorized(
            grpc::UpdateNodeRequest {
                node: Some(change),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["status".into()],
                }),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.status, grpc::NodeStatus::Degraded as i32);
    assert_eq!(updated.name, "grpc-01");
    assert_eq!(updated.revision, 2);

    // 150 nodes listed 40 at a time while another task creates and deletes others: each of
    // the 150 appears exactly once.
    let mut ids = HashSet::new();
    for n in 0..150 {
        let created = client
            .create_node(authorized(
                grpc::CreateNodeRequest {
                    node: Some(node(&format!("steady-{n}"), grpc::NodeType::Container)),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        ids.insert(created.id);
    }
    let churn = {
        let (mut client, admin) = (client.clone(), admin.clone());
        tokio::spawn(async move {
            for n in 0..60 {
                let created = client
                    .create_node(authorized(
                        grpc::CreateNodeRequest {
                            node: Some(node(&format!("churn-{n}"), grpc::NodeType::Container)),
                        },
                        &admin,
                    ))
                    .await
                    .unwrap()
                    .into_inner();
                if n % 2 == 0 {
                    client
                        .delete_node(authorized(
                            grpc::DeleteNodeRequest { id: created.id },
                            &admin,
                        ))
                        .await
                        .unwrap();
                }
            }
        })
    };
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_nodes(authorized(
                grpc::ListNodesRequest {
                    r#type: grpc::NodeType::Container as i32,
                    label_selector: "env=prod".into(),
                    page_size: 40,
                    page_token: page_token.clone(),
                    ..grpc::ListNodesRequest::default()
                },
                &consumer,
            ))
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.nodes.into_iter().map(|node| node.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    churn.await.unwrap();
    for id in &ids {
        assert_eq!(seen.iter().filter(|seen| *seen == id).count(), 1, "{id}");
    }
    let by_name = client
        .list_nodes(authorized(
            grpc::ListNodesRequest {
                name_contains: "STEADY-14".into(),
                ..grpc::ListNodesRequest::default()
            },
            &consumer,
        ))
        .await
        .unwrap()
        .into_inner();
    let mut names: Vec<String> = by_name.nodes.into_iter().map(|node| node.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "steady-14",
            "steady-140",
            "steady-141",
            "steady-142",
            "steady-143",
            "steady-144",
            "steady-145",
            "steady-146",
            "steady-147",
            "steady-148",
            "steady-149"
        ]
    );
    app.shut_down().await.unwrap();
}

/// Two instances sharing one database and one Redis prefix.
async fn two_instances() -> (TestApp, TestApp) {
    let database = Arc::new(fresh_database().await);
    let a = test_settings(&database.url);
    let mut b = test_settings(&database.url);
    b.redis_prefix = a.redis_prefix.clone();
    (
        spawn_app_with(database.clone(), a).await,
        spawn_app_with(database, b).await,
    )
}

#[actix_web::test]
async fn watchers_on_another_instance_see_every_change_in_order_and_resume_without_gaps() {
    let (a, b) = two_instances().await;
    let admin = a.admin_token().await;
    let mut watcher = connect(&b, "/api/nodes/watch", Token::Header(&admin))
        .await
        .unwrap();
    let mut grpc_watch = grpc_client(&a)
        .await
        .watch_events(authorized(grpc::WatchEventsRequest::default(), &admin))
        .await
        .unwrap()
        .into_inner();

    let node = create(
        &a,
        &admin,
        json!({"type": "VM", "name": "watched", "labels": {"env": "prod"}}),
    )
    .await;
    let id = node["id"].as_str().unwrap().to_owned();
    let path = format!("/api/nodes/{id}");
    send(
        &a,
        reqwest::Method::PATCH,
        &path,
        Some(&admin),
        Some(json!({"labels": {"env": "staging"}})),
    )
    .await;
    send(
        &a,
        reqwest::Method::PUT,
        &format!("{path}/status"),
        Some(&admin),
        Some(json!({"status": "UP"})),
    )
    .await;
    send(&a, reqwest::Method::DELETE, &path, Some(&admin), None).await;

    let mut ids = Vec::new();
    let expected = [
        ("CREATED", json!([])),
        ("UPDATED", json!(["labels"])),
        ("UPDATED", json!(["status", "last_seen"])),
        ("DELETED", json!([])),
    ];
    for (event_type, changed) in &expected {
        let event = next_event(&mut watcher).await;
        assert_eq!(event["event_type"], *event_type, "{event}");
        assert_eq!(event["changed_fields"], *changed, "{event}");
        assert_eq!(event["node_id"], id.as_str());
        ids.push(event["event_id"].as_str().unwrap().parse::<i64>().unwrap());
        let over_grpc = tokio::time::timeout(Duration::from_secs(10), grpc_watch.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(over_grpc.event_id, event["event_id"].as_str().unwrap());
        assert_eq!(
            over_grpc.changed_fields,
            *changed
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        );
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    // A filtered watch sees only what matches.
    let mut prod_only = connect(
        &b,
        "/api/nodes/watch?type=BAREMETAL&label=env%3Dprod",
        Token::Query(&admin),
    )
    .await
    .unwrap();

    // Resume from the first event: everything after it, then live, no gap, no duplicate,
    // while changes keep coming.
    let since = ids[0];
    let mut resumed = connect(
        &b,
        &format!("/api/nodes/watch?since={since}"),
        Token::Header(&admin),
    )
    .await
    .unwrap();
    create(
        &a,
        &admin,
        json!({"type": "BAREMETAL", "name": "later", "labels": {"env": "prod"}}),
    )
    .await;
    create(
        &a,
        &admin,
        json!({"type": "BAREMETAL", "name": "other", "labels": {"env": "dev"}}),
    )
    .await;
    let mut replayed = Vec::new();
    for _ in 0..5 {
        let event = next_event(&mut resumed).await;
        replayed.push(event["event_id"].as_str().unwrap().parse::<i64>().unwrap());
    }
    assert_eq!(replayed[..3], ids[1..]);
    assert!(
        replayed.windows(2).all(|pair| pair[0] < pair[1]),
        "{replayed:?}"
    );
    assert!(
        resumed
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );
    let filtered = next_event(&mut prod_only).await;
    assert_eq!(filtered["node"]["name"], "later");
    assert!(
        prod_only
            .next_within(Duration::from_millis(300))
            .await
            .is_none()
    );

    // Past what the stream keeps: RESET first, then what is kept.
    let trimmed: i64 = a
        .bus
        .publisher()
        .eval(
            "redis.call('XTRIM', KEYS[1], 'MAXLEN', 2) return 0",
            vec![a.bus.keys().registry_events()],
            Vec::<String>::new(),
        )
        .await
        .unwrap();
    assert_eq!(trimmed, 0);
    let mut reset = connect(&b, "/api/nodes/watch?since=1", Token::Header(&admin))
        .await
        .unwrap();
    let first = next_event(&mut reset).await;
    assert_eq!(first["event_type"], "RESET", "{first}");
    let after_reset = next_event(&mut reset).await;
    assert_eq!(
        after_reset["event_id"]
            .as_str()
            .unwrap()
            .parse::<i64>()
            .unwrap(),
        first["event_id"].as_str().unwrap().parse::<i64>().unwrap() + 1
    );

    // Bad `since` and no token are refused before the upgrade.
    assert_eq!(
        connect(
            &b,
            "/api/nodes/watch?since=yesterday",
            Token::Header(&admin)
        )
        .await
        .err(),
        Some(400)
    );
    assert_eq!(
        crate::ws::connect_to(b.port, "/api/nodes/watch", Token::Header(""), None, &[])
            .await
            .err(),
        Some(401)
    );
    a.shut_down().await.unwrap();
    b.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_device_socket_makes_its_node_up_then_down() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, producer) = user(&app, "boiler-7", Role::Producer).await;
    let status_of_device = || async {
        let (_, page) = send(
            &app,
            reqwest::Method::GET,
            "/api/nodes?type=IOT_DEVICE&search=boiler-7",
            Some(&admin),
            None,
        )
        .await;
        page["nodes"]
            .as_array()
            .and_then(|nodes| nodes.first())
            .map(|node| node["status"].as_str().unwrap_or("").to_owned())
    };
    let socket = connect(&app, "/producer", Token::Query(&producer))
        .await
        .unwrap();
    eventually(
        "the device's node is UP",
        Duration::from_secs(10),
        || async { (status_of_device().await.as_deref() == Some("UP")).then_some(()) },
    )
    .await;
    socket.close().await;
    eventually(
        "the device's node is DOWN",
        Duration::from_secs(10),
        || async { (status_of_device().await.as_deref() == Some("DOWN")).then_some(()) },
    )
    .await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn more_writers_than_pooled_connections_all_get_their_node() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.database_pool_size = 2;
    let app = spawn_app_with(database, settings).await;
    let admin = app.admin_token().await;
    let results = futures_util::future::join_all((0..16).map(|n| {
        let (app, admin) = (&app, admin.clone());
        async move {
            send(
                app,
                reqwest::Method::POST,
                "/api/nodes",
                Some(&admin),
                Some(json!({"type": "CUSTOM", "name": format!("burst-{n}")})),
            )
            .await
            .0
        }
    }))
    .await;
    assert!(results.iter().all(|status| *status == 201), "{results:?}");
    let (_, page) = send(
        &app,
        reqwest::Method::GET,
        "/api/nodes?type=CUSTOM",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(page["nodes"].as_array().unwrap().len(), 16);
    assert_eq!(app.audit_with(&admin, "action=node.create").await.len(), 16);
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_cli_speaks_nodectl() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, operator) = operator_token(&app, &admin, json!(["nodes:read", "nodes:write"])).await;
    let cli = |args: Vec<String>| {
        let (port, operator) = (app.grpc_port, operator.clone());
        async move {
            let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodegrid"))
                .arg("nodes")
                .args(args)
                .env("BACKEND_ADDR", format!("127.0.0.1:{port}"))
                .env("BACKEND_TOKEN", operator)
                .kill_on_drop(true)
                .output();
            let output = tokio::time::timeout(Duration::from_secs(30), output)
                .await
                .unwrap()
                .unwrap();
            (
                output.status.code(),
                String::from_utf8_lossy(&output.stdout).into_owned(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
    };
    let args = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
    let (code, out, err) = cli(args(
        "create --type VM --name cli-web --label env=prod --label tier=web --output json",
    ))
    .await;
    assert_eq!(code, Some(0), "{err}");
    let created: Value = serde_json::from_str(&out).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["labels"], json!({"env": "prod", "tier": "web"}));
    let (code, _, err) = cli(vec![
        "set-status".into(),
        id.clone(),
        "--status".into(),
        "UP".into(),
    ])
    .await;
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = cli(args("list --type VM")).await;
    assert_eq!(code, Some(0));
    let mut lines = out.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(header, ["ID", "NAME", "TYPE", "STATUS", "LAST SEEN"]);
    let row = lines.next().unwrap();
    assert!(
        row.contains(&id) && row.contains("cli-web") && row.contains("VM") && row.contains("UP"),
        "{row}"
    );
    let (code, out, _) = cli(args("list --status UP --output json")).await;
    assert_eq!(code, Some(0));
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let (code, _, err) = cli(args("create --type MAINFRAME --name x")).await;
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = cli(vec!["get".into(), uuid::Uuid::new_v4().to_string()]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("not found"), "{err}");
    let (code, out, _) = cli(vec!["delete".into(), id.clone()]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains(&id));
    app.shut_down().await.unwrap();
}

/// A loopback HTTP endpoint that answers 200 until its task is aborted.
async fn answering_endpoint() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let mut buffer = [0u8; 1024];
                let _ = stream.read(&mut buffer).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, task)
}

#[actix_web::test]
async fn a_sensor_registers_its_node_and_turns_it_down_when_its_url_stops_answering() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, operator) = operator_token(&app, &admin, json!(["nodes:read", "nodes:write"])).await;
    let (port, endpoint) = answering_endpoint().await;
    let mut sensor = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args([
            "sensor",
            "http",
            "--url",
            &format!("http://127.0.0.1:{port}/health"),
            "--node",
            "billing-api",
            "--interval",
            "200ms",
            "--timeout",
            "1s",
        ])
        .env("BACKEND_ADDR", format!("127.0.0.1:{}", app.grpc_port))
        .env("BACKEND_TOKEN", &operator)
        .env("NODEGRID_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let status = || async {
        let (_, page) = send(
            &app,
            reqwest::Method::GET,
            "/api/nodes?type=BAREMETAL&search=billing-api",
            Some(&admin),
            None,
        )
        .await;
        page["nodes"]
            .as_array()
            .and_then(|nodes| nodes.first())
            .map(|node| node["status"].as_str().unwrap_or("").to_owned())
    };
    eventually(
        "the sensor registers its node UP",
        Duration::from_secs(20),
        || async { (status().await.as_deref() == Some("UP")).then_some(()) },
    )
    .await;
    endpoint.abort();
    let _ = endpoint.await;
    eventually("the node goes DOWN", Duration::from_secs(20), || async {
        (status().await.as_deref() == Some("DOWN")).then_some(())
    })
    .await;
    // Only changes are reported: UP then DOWN, no event per check.
    let audit = app.audit_with(&admin, "action=node.update").await;
    assert_eq!(audit.len(), 2, "{audit:?}");
    // SIGTERM: a clean exit.
    let pid = sensor.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let exit = tokio::time::timeout(Duration::from_secs(10), sensor.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_simulator_loads_the_registry_and_every_watcher_sees_every_update() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (_, operator) = operator_token(&app, &admin, json!(["nodes:read", "nodes:write"])).await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_nodegrid"))
        .args([
            "sim",
            "nodes",
            "--nodes",
            "60",
            "--update-qps",
            "40",
            "--watchers",
            "3",
            "--duration",
            "2s",
            "--concurrency",
            "4",
        ])
        .env("BACKEND_ADDR", format!("127.0.0.1:{}", app.grpc_port))
        .env("BACKEND_TOKEN", &operator)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), output)
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("nodes 60 ·"), "{stdout}");
    assert!(stdout.contains("failed 0"), "{stdout}");
    assert!(
        stdout.contains("watchers that saw every update: 3 of 3"),
        "{stdout}"
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn with_public_reads_anyone_reads_and_only_writers_write() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.registry_public_reads = true;
    let app = spawn_app_with(database, settings).await;
    let admin = app.admin_token().await;
    create(&app, &admin, json!({"type": "VM", "name": "open-01"})).await;
    let (status, page) = send(&app, reqwest::Method::GET, "/api/nodes", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(page["nodes"][0]["name"], "open-01");
    let mut client = grpc_client(&app).await;
    let listed = client
        .list_nodes(tonic::Request::new(grpc::ListNodesRequest::default()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.nodes.len(), 1);
    let (status, _) = send(
        &app,
        reqwest::Method::POST,
        "/api/nodes",
        None,
        Some(json!({"type": "VM", "name": "x"})),
    )
    .await;
    assert_eq!(status, 401);
    assert!(
        connect(&app, "/api/nodes/watch", Token::Header(&admin))
            .await
            .is_ok()
    );
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn devices_of_an_instance_that_dies_are_settled_down_by_the_leader() {
    let database = Arc::new(fresh_database().await);
    let settings = test_settings(&database.url);
    let prefix = settings.redis_prefix.clone();
    // This instance starts first and holds the housekeeping lease.
    let app = spawn_app_with(database.clone(), settings).await;
    let admin = app.admin_token().await;
    let (_, producer) = user(&app, "orphan-sensor", Role::Producer).await;
    let mut other = crate::helpers::spawn_server_process(&database.url, &prefix);
    let _socket =
        crate::ws::connect_to(other.port, "/producer", Token::Query(&producer), None, &[])
            .await
            .unwrap();
    let status = || async {
        let (_, page) = send(
            &app,
            reqwest::Method::GET,
            "/api/nodes?type=IOT_DEVICE&search=orphan-sensor",
            Some(&admin),
            None,
        )
        .await;
        page["nodes"]
            .as_array()
            .and_then(|nodes| nodes.first())
            .map(|node| node["status"].as_str().unwrap_or("").to_owned())
    };
    eventually("the device is UP", Duration::from_secs(15), || async {
        (status().await.as_deref() == Some("UP")).then_some(())
    })
    .await;
    other.signal("KILL");
    let _ = other.wait_exit(Duration::from_secs(10));
    // Its connections report expires (10 s) and the leader's sweep (every 10 s) settles it.
    eventually("the device is DOWN", Duration::from_secs(40), || async {
        (status().await.as_deref() == Some("DOWN")).then_some(())
    })
    .await;
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn the_outbox_is_pruned_to_what_the_event_stream_keeps() {
    let database = Arc::new(fresh_database().await);
    let mut settings = test_settings(&database.url);
    settings.registry.events_kept = 3;
    settings.housekeeping_interval = Duration::from_millis(300);
    let app = spawn_app_with(database.clone(), settings).await;
    let admin = app.admin_token().await;
    for n in 0..8 {
        create(
            &app,
            &admin,
            json!({"type": "CUSTOM", "name": format!("kept-{n}")}),
        )
        .await;
    }
    let db = crate::helpers::connect(&database.url).await;
    let ids = || async {
        db.query("SELECT id FROM node_events ORDER BY id", &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, i64>(0))
            .collect::<Vec<_>>()
    };
    // The housekeeper prunes what the stream no longer keeps: the newest four remain (ids
    // from max - 3 on), all of them relayed.
    let kept = eventually("the outbox is pruned", Duration::from_secs(15), || async {
        let ids = ids().await;
        (ids.len() == 4).then_some(ids)
    })
    .await;
    assert_eq!(kept, (5..=8).collect::<Vec<i64>>());
    app.shut_down().await.unwrap();
}

#[actix_web::test]
async fn a_report_of_thousands_creates_and_updates_each_node_once_with_concurrent_reporters() {
    use nodegrid_protocol::registry::{NodeStatus, NodeType};
    use nodegrid_services::db::Database;
    use nodegrid_services::registry::{NodeRegistry, RegistrySettings};

    let database = Arc::new(fresh_database().await);
    let app = spawn_app_with(database.clone(), test_settings(&database.url)).await;
    // Fewer pooled connections than reporters: each chunk holds one, never two.
    let registry = NodeRegistry::new(
        Database::connect(&database.url, 2).await.unwrap(),
        app.bus.clone(),
        RegistrySettings {
            events_kept: 100_000,
        },
    );
    let name = |n: usize| format!("10.7.{}.{}:9001", n / 250, n % 250);
    let status = |n: usize| {
        if n.is_multiple_of(25) {
            NodeStatus::Unknown
        } else {
            NodeStatus::Up
        }
    };
    // More than one chunk; the first name reported twice, its last status kept.
    let mut first: Vec<(String, NodeStatus)> = (0..2_400).map(|n| (name(n), status(n))).collect();
    first.insert(0, (name(0), NodeStatus::Down));
    assert_eq!(
        registry.report_many(NodeType::Pnode, first).await.unwrap(),
        2_400
    );
    let db = crate::helpers::connect(&database.url).await;
    let counts = db
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE last_seen IS NULL),
                    count(*) FILTER (WHERE status = 'UP'), max(revision)
             FROM nodes WHERE type = 'PNODE'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(counts.get::<_, i64>(0), 2_400);
    assert_eq!(counts.get::<_, i64>(1), 96, "UNKNOWN nodes were never seen");
    assert_eq!(
        counts.get::<_, i64>(2),
        2_304,
        "the last status of a name counts"
    );
    assert_eq!(counts.get::<_, i64>(3), 1);
    let created: Vec<String> = db
        .query(
            "SELECT node->>'name' FROM node_events WHERE event_type = 'CREATED' ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected: Vec<String> = (0..2_400).map(name).collect();
    assert_eq!(
        created, expected,
        "one event per node, in the order reported"
    );

    // Four reporters at once over a pool of two, each turning a quarter DOWN and saying the
    // rest again: only the changed nodes get an event and a new revision.
    let before: f64 = db
        .query_one(
            "SELECT extract(epoch FROM max(last_seen))::float8 FROM nodes",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let events = futures_util::future::join_all((0..4).map(|quarter| {
        let registry = &registry;
        async move {
            let reports = (0..2_400)
                .filter(|n| n % 4 == quarter)
                .map(|n| {
                    let changed = (n / 4) % 2 == 0 && status(n) == NodeStatus::Up;
                    (name(n), if changed { NodeStatus::Down } else { status(n) })
                })
                .collect();
            registry
                .report_many(NodeType::Pnode, reports)
                .await
                .unwrap()
        }
    }))
    .await;
    let down = (0..2_400)
        .filter(|n| (n / 4) % 2 == 0 && status(*n) == NodeStatus::Up)
        .count();
    assert_eq!(events.iter().sum::<usize>(), down);
    let after = db
        .query_one(
            "SELECT count(*) FILTER (WHERE status = 'DOWN' AND revision = 2),
                    count(*) FILTER (WHERE revision = 1 AND extract(epoch FROM last_seen) > $1::float8),
                    (SELECT count(*) FROM node_events WHERE event_type = 'UPDATED'
                         AND changed_fields = '{status,last_seen}')
             FROM nodes WHERE type = 'PNODE'",
            &[&before],
        )
        .await
        .unwrap();
    assert_eq!(after.get::<_, i64>(0), down as i64);
    assert_eq!(
        after.get::<_, i64>(1),
        (2_400 - down) as i64,
        "a status said again marks the node seen"
    );
    assert_eq!(after.get::<_, i64>(2), down as i64);
    app.shut_down().await.unwrap();
}
