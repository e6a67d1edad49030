//! Signed-in tenant users: every admin RPC is scoped to the user's tenant
//! and role. A session of tenant A naming tenant B (or B's objects) gets
//! NotFound or PermissionDenied and changes nothing.

use tollgate_proto::admin::v1 as pb;
use tollgate_proto::client::AdminClient;
use tonic::Code;

use crate::harness::Cp;

pub(crate) const PASSWORD: &str = "correct-horse-battery-staple";

pub(crate) async fn operator(cp: &Cp) -> AdminClient {
    AdminClient::connect(&cp.running().url, &cp.running().admin_token)
        .await
        .unwrap()
}

pub(crate) async fn add_user(
    op: &mut AdminClient,
    tenant: &str,
    email: &str,
    role: &str,
) -> pb::User {
    op.auth
        .create_user(pb::CreateUserRequest {
            tenant: tenant.into(),
            email: email.into(),
            password: PASSWORD.into(),
            role: role.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap()
}

pub(crate) async fn sign_in(
    cp: &Cp,
    email: &str,
    password: &str,
) -> Result<pb::SignInResponse, tonic::Status> {
    // Sign-in needs no token: any value that is not a session is ignored by
    // the service, so connect with a placeholder.
    let mut anon = AdminClient::connect(&cp.running().url, "none")
        .await
        .unwrap();
    anon.auth
        .sign_in(pb::SignInRequest {
            email: email.into(),
            password: password.into(),
        })
        .await
        .map(|r| r.into_inner())
}

pub(crate) async fn session(cp: &Cp, email: &str) -> AdminClient {
    let token = sign_in(cp, email, PASSWORD).await.unwrap().token;
    assert!(token.starts_with("tgs-"));
    AdminClient::connect(&cp.running().url, &token)
        .await
        .unwrap()
}

#[tokio::test]
async fn roles_limit_what_a_session_may_do() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    op.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap();
    for (email, role) in [
        ("v@acme.test", "viewer"),
        ("m@acme.test", "member"),
        ("a@acme.test", "admin"),
        ("o@acme.test", "owner"),
    ] {
        add_user(&mut op, "acme", email, role).await;
    }
    let provider = |name: &str| pb::AddProviderRequest {
        tenant: "acme".into(),
        name: name.into(),
        kind: "mock".into(),
        ..Default::default()
    };
    let key = |name: &str| pb::CreateKeyRequest {
        tenant: "acme".into(),
        name: name.into(),
        expires_at_ms: 0,
        providers: Vec::new(),
    };
    let list = || pb::ListProvidersRequest {
        tenant: "acme".into(),
    };

    let mut v = session(&cp, "v@acme.test").await;
    assert_eq!(code!(v.providers.list_providers(list())), Code::Ok);
    assert_eq!(
        code!(v.providers.add_provider(provider("v"))),
        Code::PermissionDenied
    );
    assert_eq!(code!(v.keys.create_key(key("v"))), Code::PermissionDenied);
    assert_eq!(
        code!(v.auth.list_users(pb::ListUsersRequest {
            tenant: "acme".into()
        })),
        Code::PermissionDenied
    );

    let mut m = session(&cp, "m@acme.test").await;
    let created = m.keys.create_key(key("m")).await.unwrap().into_inner();
    assert!(created.secret.starts_with("tg-"));
    assert_eq!(
        code!(m.providers.add_provider(provider("m"))),
        Code::PermissionDenied
    );
    // A member revokes the keys it created, and no others.
    op.keys.create_key(key("by-operator")).await.unwrap();
    let e = m
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "by-operator".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("member"), "{}", e.message());
    // The same holds for regenerating: its own key yes, others' no.
    let regen = |key: &str| pb::RegenerateKeyRequest {
        tenant: "acme".into(),
        key: key.into(),
    };
    let e = m
        .keys
        .regenerate_key(regen("by-operator"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("regenerate"), "{}", e.message());
    assert_eq!(
        code!(v.keys.regenerate_key(regen("m"))),
        Code::PermissionDenied
    );
    let renewed = m
        .keys
        .regenerate_key(regen("m"))
        .await
        .unwrap()
        .into_inner();
    assert!(renewed.secret.starts_with("tg-") && renewed.secret != created.secret);
    assert_eq!(renewed.key.unwrap().id, created.key.clone().unwrap().id);
    let own = m
        .keys
        .revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "m".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(own.revoked_at_ms, 0);
    assert_eq!(
        code!(v.keys.revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "by-operator".into(),
        })),
        Code::PermissionDenied
    );

    let mut a = session(&cp, "a@acme.test").await;
    assert_eq!(code!(a.providers.add_provider(provider("a"))), Code::Ok);
    assert_eq!(
        code!(a.keys.revoke_key(pb::RevokeKeyRequest {
            tenant: "acme".into(),
            key: "by-operator".into(),
        })),
        Code::Ok
    );
    let new_user = |email: &str, role: &str| pb::CreateUserRequest {
        tenant: "acme".into(),
        email: email.into(),
        password: String::new(),
        role: role.into(),
    };
    let made = a
        .auth
        .create_user(new_user("m2@acme.test", "member"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        made.generated_password.len(),
        24,
        "generated and shown once"
    );
    assert_eq!(
        code!(a.auth.create_user(new_user("o2@acme.test", "owner"))),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(a.auth.disable_user(pb::DisableUserRequest {
            tenant: "acme".into(),
            user: "o@acme.test".into(),
        })),
        Code::PermissionDenied
    );
    // The generated password signs in.
    sign_in(&cp, "m2@acme.test", &made.generated_password)
        .await
        .unwrap();

    let mut o = session(&cp, "o@acme.test").await;
    assert_eq!(
        code!(o.auth.create_user(new_user("a2@acme.test", "admin"))),
        Code::Ok
    );
    assert_eq!(
        code!(o.auth.create_user(new_user("x@acme.test", "root"))),
        Code::InvalidArgument
    );
    // Disabling the viewer ends its session at once.
    assert_eq!(
        code!(o.auth.disable_user(pb::DisableUserRequest {
            tenant: "acme".into(),
            user: "v@acme.test".into(),
        })),
        Code::Ok
    );
    assert_eq!(
        code!(v.providers.list_providers(list())),
        Code::Unauthenticated
    );
    assert_eq!(
        sign_in(&cp, "v@acme.test", PASSWORD)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
}

#[tokio::test]
async fn sign_in_failures_do_not_say_which_part_was_wrong_and_sessions_end() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    op.tenants
        .create_tenant(pb::CreateTenantRequest {
            name: "acme".into(),
        })
        .await
        .unwrap();
    add_user(&mut op, "acme", "Ann@Acme.test", "admin").await;

    let wrong_password = sign_in(&cp, "ann@acme.test", "not-the-password")
        .await
        .unwrap_err();
    let wrong_email = sign_in(&cp, "nobody@acme.test", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(wrong_password.code(), Code::Unauthenticated);
    assert_eq!(wrong_email.code(), Code::Unauthenticated);
    assert_eq!(wrong_password.message(), wrong_email.message());
    assert!(!wrong_password.message().contains("ann"));

    // Email is case-insensitive.
    let ok = sign_in(&cp, "ANN@acme.test", PASSWORD).await.unwrap();
    assert!(ok.expires_at_ms > tollgate_core::time::now_ms());
    assert_eq!(ok.principal.unwrap().tenant_name, "acme");

    // Sign-out ends the session.
    let mut s = AdminClient::connect(&cp.running().url, &ok.token)
        .await
        .unwrap();
    s.auth.sign_out(pb::SignOutRequest {}).await.unwrap();
    assert_eq!(
        code!(s.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );

    // An expired session is refused.
    let late = sign_in(&cp, "ann@acme.test", PASSWORD).await.unwrap();
    let mut s = AdminClient::connect(&cp.running().url, &late.token)
        .await
        .unwrap();
    assert_eq!(code!(s.auth.who_am_i(pb::WhoAmIRequest {})), Code::Ok);
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(&tollgate_cp::store::sqlite_url(
        &cp.running().data_dir.join("tollgate.db"),
    ))
    .await
    .unwrap();
    sqlx::query("UPDATE sessions SET expires_at_ms = $1")
        .bind(tollgate_core::time::now_ms() - 1)
        .execute(&db)
        .await
        .unwrap();
    let e = s
        .tenants
        .list_tenants(pb::ListTenantsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("sign in again"), "{}", e.message());
    // Password guessing is cut off after 5 failures, even with the right
    // password, for known and unknown emails alike.
    for email in ["ann@acme.test", "ghost@acme.test"] {
        for _ in 0..5 {
            let e = sign_in(&cp, email, "guess-guess-guess").await.unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated);
        }
    }
    let locked = sign_in(&cp, "ann@acme.test", PASSWORD).await.unwrap_err();
    assert_eq!(locked.code(), Code::ResourceExhausted);
    let ghost = sign_in(&cp, "ghost@acme.test", PASSWORD).await.unwrap_err();
    assert_eq!(ghost.code(), Code::ResourceExhausted);

    // A made-up session token is refused the same way.
    let mut fake = AdminClient::connect(&cp.running().url, "tgs-made-up")
        .await
        .unwrap();
    assert_eq!(
        code!(fake.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );
    // No token: refused, except for sign-in.
    let mut none = AdminClient::connect(&cp.running().url, "none")
        .await
        .unwrap();
    assert_eq!(
        code!(none.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );
    assert_eq!(
        code!(none.tenants.list_tenants(pb::ListTenantsRequest {})),
        Code::Unauthenticated
    );
}

/// Users, sessions and tenant scoping on Postgres, when
/// `TOLLGATE_TEST_POSTGRES_URL` points at a database (names are unique per
/// run, so a shared database can be reused).
#[tokio::test]
async fn users_sessions_and_scoping_on_postgres() {
    let Ok(url) = std::env::var("TOLLGATE_TEST_POSTGRES_URL") else {
        eprintln!("TOLLGATE_TEST_POSTGRES_URL not set; skipping the Postgres users scenario");
        return;
    };
    let cp = Cp::start_with_database(&url).await;
    let mut op = operator(&cp).await;
    let run = tollgate_core::time::now_ms();
    let (ta, tb) = (format!("pgu-a-{run}"), format!("pgu-b-{run}"));
    for t in [&ta, &tb] {
        op.tenants
            .create_tenant(pb::CreateTenantRequest { name: t.clone() })
            .await
            .unwrap();
    }
    let email = format!("owner-{run}@a.test");
    add_user(&mut op, &ta, &email, "owner").await;
    let op_email = format!("ops-{run}@x.test");
    add_user(&mut op, "", &op_email, "viewer").await;
    let operators = op
        .auth
        .list_users(pb::ListUsersRequest {
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert!(operators
        .iter()
        .any(|u| u.email == op_email && u.tenant_id.is_empty()));

    let mut a = session(&cp, &email).await;
    let who = a
        .auth
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.tenant_name, ta);
    assert_eq!(
        code!(a
            .providers
            .list_providers(pb::ListProvidersRequest { tenant: tb.clone() })),
        Code::NotFound
    );
    assert_eq!(
        code!(a.providers.add_provider(pb::AddProviderRequest {
            tenant: ta.clone(),
            name: "pa".into(),
            kind: "mock".into(),
            ..Default::default()
        })),
        Code::Ok
    );
    let users = a
        .auth
        .list_users(pb::ListUsersRequest { tenant: ta.clone() })
        .await
        .unwrap()
        .into_inner()
        .users;
    assert_eq!(users.len(), 1);
    // The operator viewer reads every tenant and changes none.
    let mut ops = session(&cp, &op_email).await;
    assert_eq!(
        code!(ops
            .providers
            .list_providers(pb::ListProvidersRequest { tenant: ta.clone() })),
        Code::Ok
    );
    assert_eq!(
        code!(ops.keys.create_key(pb::CreateKeyRequest {
            tenant: tb.clone(),
            name: "k".into(),
            expires_at_ms: 0,
            providers: Vec::new(),
        })),
        Code::PermissionDenied
    );
    assert_eq!(
        code!(ops
            .data_planes
            .get_config_status(pb::GetConfigStatusRequest {})),
        Code::Ok
    );
    op.auth
        .disable_user(pb::DisableUserRequest {
            tenant: ta.clone(),
            user: email.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        code!(a.auth.who_am_i(pb::WhoAmIRequest {})),
        Code::Unauthenticated
    );
}

/// Data-plane groups (docs/operations.md): a tenant's owner manages the
/// tokens of its own tenant-scoped groups only; naming another tenant, or a
/// group of another tenant or a shared group, finds nothing and changes
/// nothing; creating groups is for operators.
#[tokio::test]
async fn tenant_session_manages_only_its_own_dp_group_tokens() {
    let cp = Cp::start().await;
    let mut op = operator(&cp).await;
    let mut ids = Vec::new();
    for name in ["tenant-a", "tenant-b"] {
        let t = op
            .tenants
            .create_tenant(pb::CreateTenantRequest { name: name.into() })
            .await
            .unwrap()
            .into_inner();
        ids.push(t.id);
    }
    add_user(&mut op, "tenant-a", "alice@a.test", "owner").await;
    add_user(&mut op, "tenant-a", "mia@a.test", "member").await;
    let group = |name: &str, tenant: &str| pb::CreateDataPlaneGroupRequest {
        name: name.into(),
        tenant: tenant.into(),
    };
    for (name, tenant) in [
        ("a-onprem", "tenant-a"),
        ("b-onprem", "tenant-b"),
        ("cloud", ""),
    ] {
        op.dp_groups
            .create_data_plane_group(group(name, tenant))
            .await
            .unwrap();
    }
    let b_token = op
        .dp_groups
        .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
            group: "b-onprem".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .token
        .unwrap();

    let mut a = session(&cp, "alice@a.test").await;
    for t in ["tenant-b".to_string(), ids[1].clone()] {
        let codes = [
            code!(a
                .dp_groups
                .list_data_plane_groups(pb::ListDataPlaneGroupsRequest { tenant: t.clone() })),
            code!(a
                .dp_groups
                .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                    group: "b-onprem".into(),
                    tenant: t.clone(),
                    ..Default::default()
                })),
            code!(a
                .dp_groups
                .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                    group: "b-onprem".into(),
                    tenant: t.clone(),
                })),
            code!(a
                .dp_groups
                .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
                    token_id: b_token.id.clone(),
                    tenant: t.clone(),
                })),
        ];
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(*c, Code::NotFound, "call #{i} with tenant {t}");
        }
    }
    // Its own tenant with B's group, B's token or the shared group: NotFound.
    let own = "tenant-a".to_string();
    for g in ["b-onprem", "cloud"] {
        assert_eq!(
            code!(a
                .dp_groups
                .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                    group: g.into(),
                    tenant: own.clone(),
                    ..Default::default()
                })),
            Code::NotFound,
            "{g}"
        );
        assert_eq!(
            code!(a
                .dp_groups
                .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                    group: g.into(),
                    tenant: own.clone(),
                })),
            Code::NotFound,
            "{g}"
        );
    }
    assert_eq!(
        code!(a
            .dp_groups
            .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
                token_id: b_token.id.clone(),
                tenant: own.clone(),
            })),
        Code::NotFound
    );
    // Without a tenant, and creating groups: not for tenant users.
    assert_eq!(
        code!(a
            .dp_groups
            .list_data_plane_groups(pb::ListDataPlaneGroupsRequest::default())),
        Code::InvalidArgument
    );
    assert_eq!(
        code!(a
            .dp_groups
            .create_data_plane_group(group("mine", "tenant-a"))),
        Code::PermissionDenied
    );
    // B's token is untouched.
    let b_tokens = op
        .dp_groups
        .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
            group: "b-onprem".into(),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens;
    assert_eq!(b_tokens.len(), 1);
    assert_eq!(b_tokens[0].revoked_at_ms, 0);

    // Its own group: listed, tokens created, listed and revoked.
    let groups = a
        .dp_groups
        .list_data_plane_groups(pb::ListDataPlaneGroupsRequest {
            tenant: own.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .groups;
    assert_eq!(
        groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
        ["a-onprem"]
    );
    let mine = a
        .dp_groups
        .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
            group: "a-onprem".into(),
            tenant: own.clone(),
            name: "rack-1".into(),
            expires_at_ms: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(mine.secret.starts_with("tgdr-"));
    let revoked = a
        .dp_groups
        .revoke_data_plane_token(pb::RevokeDataPlaneTokenRequest {
            token_id: mine.token.unwrap().id,
            tenant: own.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.revoked_at_ms > 0);
    // A member may look but not create tokens.
    let mut m = session(&cp, "mia@a.test").await;
    assert_eq!(
        code!(m
            .dp_groups
            .list_data_plane_tokens(pb::ListDataPlaneTokensRequest {
                group: "a-onprem".into(),
                tenant: own.clone(),
            })),
        Code::Ok
    );
    assert_eq!(
        code!(m
            .dp_groups
            .create_data_plane_token(pb::CreateDataPlaneTokenRequest {
                group: "a-onprem".into(),
                tenant: own.clone(),
                ..Default::default()
            })),
        Code::PermissionDenied
    );
}
