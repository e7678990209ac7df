//! Profiles on Redis as operators run it: Sentinel (`redis+sentinel://`: a
//! primary, a replica and three sentinels of the test's own) and Cluster
//! (`redis+cluster://`: three primaries).

use crate::common::*;

/// A profile on Redis Sentinel (`redis+sentinel://`): tokens kept on the primary
/// the sentinels name, and `status` says so.
#[test]
fn a_profile_keeps_its_tokens_behind_sentinel() {
    let Some(oidc) = crate::oidc::server() else {
        return;
    };
    let Some(deployment) = crate::sentinels::Sentinels::start() else {
        return;
    };
    let home = Home::with_config(&format!(
        "[profiles.api]\nissuer = \"{}\"\nclient_id = \"cc-basic\"\nclient_secret = \"cc-basic-TOPSECRET\"\n\
         scope = \"read\"\nstore = \"{}\"\n",
        oidc.issuer,
        deployment.url()
    ));
    let first = home.run(&["token", "-p", "api"]).expect_code(0).stdout();
    let again = home.run(&["token", "-p", "api"]).expect_code(0).stdout();
    assert_eq!(first, again, "kept on the primary between invocations");
    let status = home.run(&["status", "-p", "api"]).expect_code(0).stdout();
    assert!(status.contains("the primary Sentinel names"), "{status}");
}

/// A profile on Redis Cluster: tokens kept on the node of their slot, and
/// `status` says so.
#[test]
fn a_profile_keeps_its_tokens_in_a_cluster() {
    let Some(oidc) = crate::oidc::server() else {
        return;
    };
    let Some(cluster) = crate::cluster::Cluster::start() else {
        return;
    };
    let home = Home::with_config(&format!(
        "[profiles.api]\nissuer = \"{}\"\nclient_id = \"cc-basic\"\nclient_secret = \"cc-basic-TOPSECRET\"\n\
         scope = \"read\"\nstore = \"{}\"\n",
        oidc.issuer,
        cluster.url()
    ));
    let first = home.run(&["token", "-p", "api"]).expect_code(0).stdout();
    let again = home.run(&["token", "-p", "api"]).expect_code(0).stdout();
    assert_eq!(first, again, "kept in the cluster between invocations");
    let status = home.run(&["status", "-p", "api"]).expect_code(0).stdout();
    assert!(status.contains("redis cluster"), "{status}");
}
