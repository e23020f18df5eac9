//! Signatures, SBOMs and attestations travel with their images: cosign-format signatures (legacy
//! `.sig` tags, signed with openssl), an SPDX SBOM and an in-toto attestation (OCI 1.1 referrers
//! in the fallback index, since distribution 2.8 has no referrers API) and a signature of the
//! SBOM, on a single-platform image, an index, one platform manifest of it and an image pulled
//! by digest. At the destination every signature verifies against the fixture key and names the
//! destination's digest, and every artifact is listed in the destination's fallback index.

mod common;

use std::path::Path;

use common::served::Served;
use common::{Seeded, Workspace, seeded_registry_with, tar_entry};
use hpn_testkit::fixtures::attachments::{
    Attached, AttachedKind, SigningKey, Subject, attach, fallback_referrers, verified_signature,
};
use hpn_testkit::{Dockerd, Podman, Registry};

/// The seeded source, its attachments (with the repository each lives in) and the key.
struct Signed {
    seeded: Seeded,
    key: SigningKey,
    attached: Vec<(String, Attached)>,
}

/// app-b (one platform), multi (the index and its amd64 manifest) and by-digest, each with a
/// signature, an SBOM, an attestation and a signature of the SBOM.
fn signed_registry() -> Signed {
    let seeded = seeded_registry_with(&["app-b", "multi", "by-digest"]);
    let key = SigningKey::generate().expect("an openssl key");
    let mut attached = Vec::new();
    let mut sign = |name: &str, subject: Subject| {
        let repository = seeded.fixtures.image(name).repository.clone();
        for one in attach(&seeded.registry, &repository, &subject, &key).expect("attach") {
            attached.push((repository.clone(), one));
        }
    };
    for name in ["app-b", "multi", "by-digest"] {
        let image = seeded.fixtures.image(name);
        sign(name, Subject { media_type: image.media_type.clone(), digest: image.digest.clone(), size: image.size });
    }
    let amd64 = seeded.fixtures.image("multi").amd64().manifest.clone();
    sign("multi", Subject { media_type: amd64.media_type, digest: amd64.digest, size: amd64.size });
    Signed { seeded, key, attached }
}

impl Signed {
    fn references(&self) -> Vec<String> {
        ["app-b", "multi", "by-digest"].iter().map(|name| self.seeded.fixtures.image(name).reference.clone()).collect()
    }

    /// Every attachment is at `site` under `repository_at(source repository)`: signatures
    /// verify and name their subject's digest, referrers are in the subject's fallback index.
    #[track_caller]
    fn assert_carried_to(&self, site: &Registry, repository_at: impl Fn(&str) -> String) {
        self.assert_some_carried_to(site, repository_at, |_| true);
    }

    /// [`Signed::assert_carried_to`] for the attachments of the fixtures `names` alone.
    #[track_caller]
    fn assert_carried_to_only(&self, site: &Registry, names: &[&str]) {
        let repositories: Vec<&str> =
            names.iter().map(|name| self.seeded.fixtures.image(name).repository.as_str()).collect();
        self.assert_some_carried_to(site, str::to_owned, |repository| repositories.contains(&repository));
    }

    #[track_caller]
    fn assert_some_carried_to(
        &self,
        site: &Registry,
        repository_at: impl Fn(&str) -> String,
        wanted: impl Fn(&str) -> bool,
    ) {
        for (repository, attached) in self.attached.iter().filter(|(repository, _)| wanted(repository)) {
            let repository = repository_at(repository);
            match attached.kind {
                AttachedKind::Signature => {
                    let named = verified_signature(site, &repository, &attached.subject, &self.key)
                        .unwrap_or_else(|error| panic!("signature of {} in {repository}: {error:#}", attached.subject));
                    assert_eq!(named, attached.subject, "the signature names another digest");
                    assert!(site.manifest(&repository, &attached.subject).is_ok(), "the signed manifest is there");
                }
                AttachedKind::Sbom | AttachedKind::Attestation => {
                    let listed = fallback_referrers(site, &repository, &attached.subject).unwrap_or_else(|error| {
                        panic!("fallback index of {} in {repository}: {error:#}", attached.subject)
                    });
                    assert!(listed.contains(&attached.digest), "{attached:?} is not listed in {listed:?}");
                    assert_eq!(
                        site.manifest(&repository, &attached.digest).unwrap().digest.to_string(),
                        attached.digest
                    );
                }
            }
        }
    }
}

#[test]
fn pull_then_push_carries_signatures_sboms_and_attestations() {
    let signed = signed_registry();
    let work = Workspace::new();
    let mut pull = vec!["pull".to_owned(), "--all-platforms".to_owned(), "--json".to_owned()];
    pull.extend(signed.references());
    let run = work.hpn(&pull);
    run.assert_ok();
    // Each image's own attachments (and the SBOM's signature) are counted, the index's
    // platform manifest's with the index.
    let json = run.json();
    let counted: usize =
        json["images"].as_array().unwrap().iter().map(|image| image["attachments"].as_array().unwrap().len()).sum();
    assert_eq!(counted, signed.attached.len(), "{json:#}");
    work.assert_store_verifies();
    // `store ls` lists the images, each with its attachments under it rather than as images.
    let listed = work.hpn(["store", "ls", "--json"]);
    listed.assert_ok();
    let listed = listed.json();
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{listed:#?}");
    for image in listed {
        let kinds: Vec<&str> =
            image["attachments"].as_array().unwrap().iter().map(|one| one["kind"].as_str().unwrap()).collect();
        assert!(kinds.contains(&"signature") && kinds.contains(&"referrers"), "{image:#}");
    }
    // gc keeps every attachment: pushing afterwards needs all of them.
    work.hpn(["store", "gc"]).assert_ok();

    let site = Registry::start().unwrap();
    let mut push =
        vec!["push".to_owned(), "-r".to_owned(), site.addr().to_owned(), "--push-mode".to_owned(), "2".to_owned()];
    push.extend(signed.references());
    work.hpn(&push).assert_ok();
    signed.assert_carried_to(&site, str::to_owned);
}

#[test]
fn copy_between_registries_carries_them_under_the_new_name() {
    let signed = signed_registry();
    let work = Workspace::new();
    let site = Registry::start().unwrap();
    for name in ["app-b", "multi", "by-digest"] {
        let image = signed.seeded.fixtures.image(name);
        let destination = format!(
            "docker://{}/copied/{name}{}",
            site.addr(),
            match image.tags.first() {
                Some(tag) => format!(":{tag}"),
                None => format!("@{}", image.digest),
            }
        );
        work.hpn(["copy", "--all-platforms", &format!("docker://{}", image.reference), &destination]).assert_ok();
    }
    signed.assert_carried_to(&site, |repository| format!("copied/{}", repository.rsplit('/').next().unwrap()));
}

#[test]
fn no_referrers_and_referrers_type_leave_them_behind() {
    let signed = signed_registry();
    let app = signed.seeded.fixtures.image("app-b");
    let work = Workspace::new();
    let run = work.hpn(["pull", "--no-referrers", "--json", &app.reference]);
    run.assert_ok();
    assert!(run.json()["images"][0]["attachments"].as_array().unwrap().is_empty());
    let refs = work.store_refs();
    assert!(refs.iter().all(|name| !name.contains("sha256-")), "{refs:?}");

    let other = Workspace::new();
    let run = other.hpn(["pull", "--referrers-type", "application/spdx+json", "--json", &app.reference]);
    run.assert_ok();
    let kinds: Vec<String> = run.json()["images"][0]["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|attachment| attachment["artifact_type"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(kinds, ["application/spdx+json"]);
}

#[test]
fn what_stays_behind_is_said_and_why() {
    let signed = signed_registry();
    let multi = signed.seeded.fixtures.image("multi");
    let work = Workspace::new();
    // One platform of the signed index: the store keeps the index, a registry cannot take it
    // without its other platform, so the platform's manifest goes and the index's attachments stay.
    work.hpn(["pull", "--platform", "linux/amd64", &multi.reference]).assert_ok();
    let site = Registry::start().unwrap();
    let run = work.hpn(["push", "-r", site.addr(), "--push-mode", "2", "--json", &multi.reference]);
    run.assert_ok();
    let image = &run.json()["images"][0];
    let left = image["attachments_left_behind"].as_array().unwrap();
    assert_eq!(left.len(), 3, "{image:#}");
    assert!(left.iter().all(|one| one["reason"] == "index-not-copied" && one["subject"] == multi.digest.as_str()));
    assert!(left[0]["advice"].as_str().unwrap().contains("--all-platforms"));
    let amd64 = &multi.amd64().manifest.digest;
    let named = verified_signature(&site, &multi.repository, amd64, &signed.key).unwrap();
    assert_eq!(&named, amd64);
    assert_eq!(image["attachments"].as_array().unwrap().len(), 4, "{image:#}");

    // A save of that one platform likewise: the archive has the index, but its far side gets the
    // platform's manifest, so the index's attachments stay behind and the platform's travel.
    let saved = Workspace::new();
    let run = saved.hpn(["save", "--platform", "linux/amd64", "-o", "one.tar", "--json", &multi.reference]);
    run.assert_ok();
    let image = &run.json()["images"][0];
    let left = image["attachments_left_behind"].as_array().unwrap();
    assert_eq!(left.len(), 3, "{image:#}");
    assert!(left.iter().all(|one| one["reason"] == "index-not-copied" && one["subject"] == multi.digest.as_str()));
    assert!(left[0]["advice"].as_str().unwrap().contains("--all-platforms"));
    assert_eq!(image["attachments"].as_array().unwrap().len(), 4, "{image:#}");
    let entries = attachment_entries(&saved.path().join("one.tar"));
    // The amd64 manifest's .sig and fallback index, and the .sig of the SBOM that index lists.
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert_eq!(entries.iter().filter(|(_, subject)| subject == amd64).count(), 2, "{entries:?}");
    assert!(entries.iter().all(|(_, subject)| subject != multi.digest.as_str()), "{entries:?}");
    let human = saved.hpn(["save", "--platform", "linux/amd64", "-o", "two.tar", &multi.reference]);
    human.assert_ok();
    assert!(human.stdout.contains("3 attachment(s) left behind"), "{}", human.stdout);

    // `hpn copy` of that platform into an archive: the same entries, none for the index.
    let copied = saved.path().join("copied.tar");
    let source = format!("docker://{}", multi.reference);
    saved
        .hpn(["copy", "--platform", "linux/amd64", &source, &format!("docker-archive:{}", copied.display())])
        .assert_ok();
    let entries = attachment_entries(&copied);
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().all(|(_, subject)| subject != multi.digest.as_str()), "{entries:?}");
}

/// The attachment entries of an archive's index.json (names with a `sha256-` tag), each with the
/// subject the bill of contents gives it.
fn attachment_entries(archive: &Path) -> Vec<(String, String)> {
    let index: serde_json::Value = serde_json::from_slice(&tar_entry(archive, "index.json")).unwrap();
    let bill: serde_json::Value = serde_json::from_slice(&tar_entry(archive, "hpn-contents.json")).unwrap();
    let mut entries = Vec::new();
    for entry in index["manifests"].as_array().unwrap() {
        let name = entry["annotations"]["io.containerd.image.name"].as_str().unwrap();
        if !name.rsplit(':').next().unwrap().starts_with("sha256-") {
            continue;
        }
        let billed = bill["images"].as_array().unwrap().iter().find(|image| image["name"] == name);
        let subject = billed.and_then(|image| image["subject"].as_str()).unwrap_or_else(|| panic!("{name}: {bill:#}"));
        entries.push((name.to_owned(), subject.to_owned()));
    }
    entries
}

/// `HOST/REPO` of `HOST/REPO:TAG` or `HOST/REPO@DIGEST`.
fn repository_of(name: &str) -> &str {
    match name.split_once('@') {
        Some((repository, _)) => repository,
        None => name.rsplit_once(':').filter(|(_, tag)| !tag.contains('/')).map_or(name, |(repository, _)| repository),
    }
}

/// The image names manifest.json gives docker.
fn docker_names(archive: &Path) -> Vec<String> {
    let manifest: serde_json::Value = serde_json::from_slice(&tar_entry(archive, "manifest.json")).unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|item| item["RepoTags"].as_array().cloned().unwrap_or_default())
        .map(|tag| tag.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn archives_carry_them_and_docker_and_podman_load_no_extra_images() {
    let signed = signed_registry();
    let work = Workspace::new();
    let mut save = vec!["save", "--all-platforms", "-o", "signed.tar", "--json"];
    let references = signed.references();
    save.extend(references.iter().map(String::as_str));
    let run = work.hpn(&save);
    run.assert_ok();
    let json = run.json();
    let counted: usize =
        json["images"].as_array().unwrap().iter().map(|image| image["attachments"].as_array().unwrap().len()).sum();
    assert_eq!(counted, signed.attached.len(), "{json:#}");
    let archive = work.path().join("signed.tar");

    // The OCI side lists each legacy tag and fallback index with its subject; docker's never.
    let entries = attachment_entries(&archive);
    for (repository, attached) in &signed.attached {
        let hex = attached.subject.trim_start_matches("sha256:");
        let wanted = match attached.kind {
            AttachedKind::Signature => format!("/{repository}:sha256-{hex}.sig"),
            AttachedKind::Sbom | AttachedKind::Attestation => format!("/{repository}:sha256-{hex}"),
        };
        assert!(
            entries.iter().any(|(name, subject)| name.ends_with(&wanted) && *subject == attached.subject),
            "{wanted} not in {entries:?}"
        );
    }
    let docker_names = docker_names(&archive);
    assert!(docker_names.iter().all(|name| !name.contains("sha256-")), "{docker_names:?}");
    let repositories = String::from_utf8(tar_entry(&archive, "repositories")).unwrap();
    assert!(!repositories.contains("sha256-"), "{repositories}");
    // verify counts the attachment entries apart from the images they are attached to.
    let verified = work.hpn(["--json", "verify", archive.to_str().unwrap()]);
    verified.assert_ok();
    let report = &verified.json()[0];
    assert_eq!(report["images"], references.len(), "{report:#}");
    assert_eq!(report["attachments"], entries.len(), "{report:#}");

    // docker and podman load it and get the images manifest.json lists, nothing more.
    let dockerd = Dockerd::start().expect("start dockerd");
    assert!(dockerd.images().unwrap().is_empty());
    dockerd.load(&archive).unwrap_or_else(|error| panic!("docker load: {error:#}\n{}", dockerd.log_tail(20)));
    let loaded = dockerd.images().unwrap();
    assert!(loaded.iter().all(|image| !image["Tag"].as_str().unwrap_or_default().contains("sha256-")), "{loaded:#?}");
    let tagged = loaded.iter().filter(|image| image["Tag"] != "<none>").count();
    assert_eq!(tagged, docker_names.len(), "{loaded:#?}");
    let podman = Podman::new();
    assert!(podman.images().unwrap().is_empty());
    podman.load(&archive).unwrap_or_else(|error| panic!("podman load: {error:#}"));
    let loaded = podman.images().unwrap();
    assert!(!format!("{loaded:?}").contains("sha256-"), "{loaded:#?}");
    let ids: std::collections::HashSet<&str> = loaded.iter().map(|image| image["Id"].as_str().unwrap()).collect();
    let manifest: serde_json::Value = serde_json::from_slice(&tar_entry(&archive, "manifest.json")).unwrap();
    assert_eq!(ids.len(), manifest.as_array().unwrap().len(), "{loaded:#?}");

    // save → push -i, under new names: legacy tags go with the new name, referrers by digest and
    // in the fallback index of the destination.
    let site = Registry::start().unwrap();
    let mut push = vec!["push", "-r", site.addr(), "--push-mode", "2", "-p", "moved"];
    push.extend(["-i", archive.to_str().unwrap()]);
    let pushed = work.hpn(&push);
    pushed.assert_ok();
    signed.assert_carried_to(&site, |repository| format!("moved/{}", repository.rsplit('/').next().unwrap()));

    // save → hpn load → push from the store of another machine.
    let far = Workspace::new();
    far.hpn(["load", "-i", archive.to_str().unwrap()]).assert_ok();
    far.assert_store_verifies();
    let listed = far.store_refs();
    assert!(listed.iter().any(|line| line.contains("signature of")), "{listed:?}");
    assert!(listed.iter().any(|line| line.contains("referrers of")), "{listed:?}");
    let other = Registry::start().unwrap();
    let mut push = vec!["push".to_owned(), "-r".to_owned(), other.addr().to_owned()];
    push.extend(["--push-mode".to_owned(), "2".to_owned()]);
    push.extend(references);
    far.hpn(&push).assert_ok();
    signed.assert_carried_to(&other, str::to_owned);
}

#[test]
fn volumes_put_attachments_with_their_images() {
    let signed = signed_registry();
    let work = Workspace::new();
    let references: Vec<String> =
        ["app-b", "by-digest"].iter().map(|name| signed.seeded.fixtures.image(name).reference.clone()).collect();
    // Room for either image with its attachments (and the lists of contents), not for both.
    let mut largest = 0;
    for (position, reference) in references.iter().enumerate() {
        let output = format!("alone{position}.tar");
        work.hpn(["save", "-o", &output, reference]).assert_ok();
        largest = largest.max(std::fs::metadata(work.path().join(output)).unwrap().len());
    }
    let volume_size = (largest + 64 * 1024).to_string();
    let mut split = vec!["save", "--split", &volume_size, "-o", "set.tar"];
    split.extend(references.iter().map(String::as_str));
    work.hpn(&split).assert_ok();
    let volumes: Vec<std::path::PathBuf> =
        (1..=9).map(|number| work.path().join(format!("set.{number:03}.tar"))).filter(|path| path.exists()).collect();
    assert_eq!(volumes.len(), 2, "{volumes:?}");

    let bill: serde_json::Value = serde_json::from_slice(&tar_entry(&volumes[0], "hpn-contents.json")).unwrap();
    let listed = bill["images"].as_array().unwrap();
    let mut attachments = 0;
    let images: Vec<&serde_json::Value> = listed.iter().filter(|image| image.get("subject").is_none()).collect();
    assert!(images.iter().all(|image| image["volumes"].as_array().unwrap().len() == 1), "{bill:#}");
    for image in images {
        let name = image["name"].as_str().unwrap();
        let repository = repository_of(name);
        for attachment in listed.iter().filter(|one| one.get("subject").is_some()) {
            let attached_name = attachment["name"].as_str().unwrap();
            if repository_of(attached_name) == repository {
                assert_eq!(attachment["volumes"], image["volumes"], "{attached_name} is not with {name}: {bill:#}");
                attachments += 1;
            }
        }
    }
    assert_eq!(attachments, listed.iter().filter(|one| one.get("subject").is_some()).count(), "{bill:#}");
    work.hpn(std::iter::once("verify".to_owned()).chain(volumes.iter().map(|path| path.display().to_string())))
        .assert_ok();

    // Each volume's index.json lists its image and that image's attachments, nothing else.
    for volume in &volumes {
        let index: serde_json::Value = serde_json::from_slice(&tar_entry(volume, "index.json")).unwrap();
        let names: Vec<&str> = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["annotations"]["io.containerd.image.name"].as_str().unwrap())
            .collect();
        let images: Vec<&&str> = names.iter().filter(|name| !name.contains(":sha256-")).collect();
        assert_eq!(images.len(), 1, "{names:?}");
        let repository = repository_of(images[0]);
        assert!(names.iter().all(|name| repository_of(name) == repository), "{names:?}");
        assert!(names.len() >= 4, "the image, two signatures and a fallback index: {names:?}");
    }
    // Loaded together, the set gives every image its attachments; pushed, they all arrive.
    let far = Workspace::new();
    let mut load = vec!["load".to_owned()];
    for volume in &volumes {
        load.extend(["-i".to_owned(), volume.display().to_string()]);
    }
    far.hpn(&load).assert_ok();
    let site = Registry::start().unwrap();
    let mut push = vec!["push".to_owned(), "-r".to_owned(), site.addr().to_owned()];
    push.extend(["--push-mode".to_owned(), "2".to_owned()]);
    push.extend(references);
    far.hpn(&push).assert_ok();
    signed.assert_carried_to_only(&site, &["app-b", "by-digest"]);
}

/// Whether python3 can import `oras` (pip's oras-py, which .ci/run installs). Under `CI=true` its
/// absence fails the test; elsewhere the test is skipped, saying why.
fn oras_available() -> bool {
    let found = std::process::Command::new("python3")
        .args(["-c", "import oras.client"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but python3 cannot import oras (pip install oras)"
        );
        eprintln!("skipped: python3 cannot import oras (pip install oras to run this test)");
    }
    found
}

/// Runs tests/clients/oras_read.py against `host` for every attachment of `signed`.
#[track_caller]
fn oras_reads(work: &Workspace, host: &str, signed: &Signed) {
    let expected: Vec<serde_json::Value> = signed
        .attached
        .iter()
        .map(|(repository, attached)| {
            let kind = if attached.kind == AttachedKind::Signature { "signature" } else { "referrer" };
            serde_json::json!({"repository": repository, "kind": kind, "subject": attached.subject,
                               "digest": attached.digest})
        })
        .collect();
    let list = work.file("oras-expected.json", &serde_json::to_string(&expected).unwrap());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/oras_read.py");
    let output = std::process::Command::new("python3").arg(script).arg(host).arg(list).output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "oras-py at {host}:\n{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), expected.len(), "{stdout}");
}

#[test]
fn an_independent_client_reads_what_hpn_pushed_and_serves() {
    if !oras_available() {
        return;
    }
    let signed = signed_registry();
    let work = Workspace::new();
    let mut pull = vec!["pull".to_owned(), "--all-platforms".to_owned()];
    pull.extend(signed.references());
    work.hpn(&pull).assert_ok();
    // Pushed to a registry without the referrers API: found through the fallback index.
    let site = Registry::start().unwrap();
    let mut push =
        vec!["push".to_owned(), "-r".to_owned(), site.addr().to_owned(), "--push-mode".to_owned(), "2".to_owned()];
    push.extend(signed.references());
    work.hpn(&push).assert_ok();
    oras_reads(&work, site.addr(), &signed);
    // Served from the store: hpn serve answers the referrers API itself.
    let served = Served::start(&work, &[]);
    oras_reads(&work, &served.addr, &signed);
    drop(served);
    // Served from an archive hpn saved: the attachments its index.json lists.
    let mut save = vec!["save".to_owned(), "--all-platforms".to_owned(), "-o".to_owned(), "signed.tar".to_owned()];
    save.extend(signed.references());
    work.hpn(&save).assert_ok();
    let served = Served::start(&work, &["-i", "signed.tar"]);
    oras_reads(&work, &served.addr, &signed);
}

#[test]
fn a_failed_discovery_names_the_image_and_registry_and_suggests_no_referrers() {
    let proxied = common::proxied_registry(&["app-b"]);
    proxied.proxy.add(hpn_testkit::Rule::new("/referrers/", hpn_testkit::Fault::Status(500)));
    let reference = proxied.reference("app-b");
    let work = Workspace::new();
    let run = work.hpn(["pull", &reference]);
    assert_eq!(run.code, 4, "a runtime failure: {}", run.stderr);
    assert!(run.stderr.contains(&format!("attestations of image {reference}")), "{}", run.stderr);
    assert!(run.stderr.contains(proxied.proxy.addr()) && run.stderr.contains("500"), "{}", run.stderr);
    assert!(run.stderr.contains("--no-referrers"), "{}", run.stderr);
    // Not named: the image travels with its attachments or not at all.
    assert!(work.store_refs().is_empty(), "{:?}", work.store_refs());
    work.hpn(["pull", "--no-referrers", &reference]).assert_ok();
}

#[test]
fn discovery_costs_a_bounded_number_of_requests_and_each_manifest_is_fetched_once() {
    let proxied = common::proxied_registry(&["app-b"]);
    let key = SigningKey::generate().unwrap();
    let image = proxied.image("app-b");
    let subject = Subject { media_type: image.media_type.clone(), digest: image.digest.clone(), size: image.size };
    let attached = attach(&proxied.seeded.registry, &image.repository, &subject, &key).unwrap();
    let work = Workspace::new();
    proxied.proxy.clear_log();
    work.hpn(["pull", &proxied.reference("app-b")]).assert_ok();
    let requests = proxied.proxy.requests();
    let log: Vec<String> = requests.iter().map(|request| format!("{} {}", request.method, request.path())).collect();
    for one in &attached {
        let gets = log
            .iter()
            .filter(|line| line.starts_with("GET") && line.ends_with(&format!("/manifests/{}", one.digest)))
            .count();
        assert_eq!(gets, 1, "{} fetched {gets} times: {log:#?}", one.digest);
    }
    // Per subject (the image and each of its 4 attachments): 3 legacy-tag HEADs, the referrers
    // API and, on its 404, the fallback tag.
    let discovery =
        log.iter().filter(|line| line.contains("/referrers/") || line.contains("/manifests/sha256-")).count();
    assert_eq!(discovery, 5 * 5, "{log:#?}");
}

#[test]
fn store_rm_takes_the_attachments_of_what_it_removes_and_gc_their_blobs() {
    let signed = signed_registry();
    let work = Workspace::new();
    let mut pull = vec!["pull".to_owned(), "--all-platforms".to_owned()];
    pull.extend(signed.references());
    work.hpn(&pull).assert_ok();
    let multi = signed.seeded.fixtures.image("multi");
    // Superseded versions of fallback indexes go first: what gc frees after rm is the image's.
    work.hpn(["store", "gc"]).assert_ok();
    let run = work.hpn(["store", "rm", "--json", &multi.reference]);
    run.assert_ok();
    let removed = run.json()["removed"].as_array().unwrap().clone();
    // The image; for the index and for its amd64 manifest, the .sig, the fallback index and the
    // .sig of the SBOM that lists.
    assert_eq!(removed.len(), 1 + 3 + 3, "{removed:#?}");
    let refs: Vec<String> = work
        .hpn(["store", "ls", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|image| {
            let mut names = vec![image["name"].as_str().unwrap().to_owned()];
            names.extend(
                image["attachments"].as_array().unwrap().iter().map(|one| one["name"].as_str().unwrap().to_owned()),
            );
            names
        })
        .collect();
    assert!(refs.iter().all(|name| !name.contains("/multi")), "{refs:?}");
    assert_eq!(refs.len(), 2 * 4, "app-b and by-digest, each with its .sig, fallback index and SBOM .sig: {refs:?}");
    let gc = work.hpn(["store", "gc", "--json"]);
    gc.assert_ok();
    assert!(gc.json()["blobs_removed"].as_u64().unwrap() > 0, "{:#}", gc.json());
    work.assert_store_verifies();
    let site = Registry::start().unwrap();
    let kept: Vec<String> =
        ["app-b", "by-digest"].iter().map(|name| signed.seeded.fixtures.image(name).reference.clone()).collect();
    let mut push =
        vec!["push".to_owned(), "-r".to_owned(), site.addr().to_owned(), "--push-mode".to_owned(), "2".to_owned()];
    push.extend(kept);
    work.hpn(&push).assert_ok();
    signed.assert_carried_to_only(&site, &["app-b", "by-digest"]);
}

#[test]
fn an_attachment_that_is_an_index_travels_with_the_manifests_it_lists() {
    let seeded = seeded_registry_with(&["app-b"]);
    let image = seeded.fixtures.image("app-b");
    let subject = Subject { media_type: image.media_type.clone(), digest: image.digest.clone(), size: image.size };
    let (index, parts) =
        hpn_testkit::fixtures::attachments::attach_index(&seeded.registry, &image.repository, &subject).unwrap();
    let work = Workspace::new();
    // Through an archive: save, then push -i to a registry.
    let run = work.hpn(["save", "-o", "bundle.tar", "--json", &image.reference]);
    run.assert_ok();
    let carried = run.json()["images"][0]["attachments"].clone();
    assert!(carried.as_array().unwrap().iter().any(|one| one["digest"] == index.digest.as_str()), "{carried:#}");
    work.hpn(["verify", "bundle.tar"]).assert_ok();
    let site = Registry::start().unwrap();
    work.hpn(["push", "-r", site.addr(), "--push-mode", "2", "-i", "bundle.tar"]).assert_ok();
    let listed = fallback_referrers(&site, &image.repository, &image.digest).unwrap();
    assert!(listed.contains(&index.digest), "{listed:?}");
    assert_eq!(site.manifest(&image.repository, &index.digest).unwrap().digest.to_string(), index.digest);
    for part in &parts {
        assert_eq!(site.manifest(&image.repository, &part.digest).unwrap().digest.to_string(), part.digest);
    }
}
