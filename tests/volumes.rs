//! `hpn save --split`: a set of volumes of bounded size, each a complete
//! hybrid archive; whole-image volumes loading alone in dockerd and podman;
//! blobs cut into parts joined again by hpn; volumes shuffled, missing,
//! duplicated, foreign and corrupt.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::{Workspace, seeded_registry_with, tar_entry, tar_list};
use hpn_testkit::{Dockerd, Podman, Registry};

/// The volumes of `stem` in `dir` (`stem.001.tar`, …), in volume order.
fn volumes_of(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let mut volumes: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.strip_prefix(&format!("{stem}."))
                .and_then(|rest| rest.split_once('.'))
                .is_some_and(|(number, _)| number.len() >= 3 && number.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    volumes.sort();
    volumes
}

fn bill(volume: &Path) -> serde_json::Value {
    serde_json::from_slice(&tar_entry(volume, "hpn-contents.json")).unwrap()
}

/// The names index.json of `volume` lists.
fn indexed_names(volume: &Path) -> Vec<String> {
    let index: serde_json::Value = serde_json::from_slice(&tar_entry(volume, "index.json")).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["annotations"]["io.containerd.image.name"].as_str().unwrap().to_owned())
        .collect()
}

fn args_with_inputs<'a>(head: &[&'a str], volumes: &'a [PathBuf]) -> Vec<&'a str> {
    let mut args = head.to_vec();
    for volume in volumes {
        args.extend(["-i", volume.to_str().unwrap()]);
    }
    args
}

/// Flips the byte `into` bytes into the data of entry `name` of `archive`.
fn flip_byte(archive: &Path, name: &str, into: u64) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut tar = tar::Archive::new(fs::File::open(archive).unwrap());
    let offset = tar
        .entries()
        .unwrap()
        .map(Result::unwrap)
        .find(|entry| entry.path().unwrap().to_str() == Some(name))
        .map(|entry| entry.raw_file_position())
        .unwrap_or_else(|| panic!("{name} is not in {}", archive.display()));
    let mut file = fs::OpenOptions::new().read(true).write(true).open(archive).unwrap();
    let mut byte = [0u8];
    file.seek(SeekFrom::Start(offset + into)).unwrap();
    file.read_exact(&mut byte).unwrap();
    byte[0] ^= 0x55;
    file.seek(SeekFrom::Start(offset + into)).unwrap();
    file.write_all(&byte).unwrap();
}

#[test]
fn whole_image_volumes_load_alone_in_docker_and_podman_and_no_volume_is_over_the_size() {
    let seeded = seeded_registry_with(&["base", "uncompressed", "dup-layer", "app-a"]);
    let work = Workspace::new();
    let base = seeded.fixtures.image("base");
    work.hpn(["save", base.reference.as_str(), "-o", "base.tar"]).assert_ok();
    // Room for base and a little more: uncompressed and dup-layer fit whole (each with its own
    // copy of base), app-a (base, runtime and its own layer) does not.
    let size = fs::metadata(work.path().join("base.tar")).unwrap().len() + 160 * 1024;
    let references: Vec<&str> = ["base", "uncompressed", "dup-layer", "app-a"]
        .iter()
        .map(|name| seeded.fixtures.image(name).reference.as_str())
        .collect();
    let mut args = vec!["save"];
    args.extend(&references);
    let size_arg = size.to_string();
    args.extend(["-o", "set.tar", "--split", size_arg.as_str()]);
    work.hpn(&args).assert_ok();

    let volumes = volumes_of(work.path(), "set");
    assert!(volumes.len() >= 3, "{volumes:?}");
    let dockerd = Dockerd::start().expect("start dockerd");
    let podman = Podman::new();
    let mut whole = Vec::new();
    for volume in &volumes {
        let length = fs::metadata(volume).unwrap().len();
        assert!(length <= size, "{} is {length} bytes, over {size}", volume.display());
        let bill = bill(volume);
        assert_eq!(bill["volumes"], volumes.len(), "{bill:#}");
        let names = indexed_names(volume);
        if names.is_empty() {
            continue;
        }
        // Each volume alone: docker and podman load the images it lists whole.
        dockerd.load(volume).unwrap_or_else(|e| panic!("docker load {}: {e:#}", volume.display()));
        podman.load(volume).unwrap_or_else(|e| panic!("podman load {}: {e:#}", volume.display()));
        whole.extend(names);
    }
    for name in ["base", "uncompressed", "dup-layer"] {
        let image = seeded.fixtures.image(name);
        assert!(whole.contains(&image.reference), "{name} is whole in no volume: {whole:?}");
        let tagged = &image.tag_references[0];
        let docker = dockerd.image_inspect(tagged).unwrap_or_else(|e| panic!("docker has no {tagged}: {e:#}"));
        assert_eq!(docker["Id"], image.amd64().config.digest.as_str());
        podman.image_inspect(tagged).unwrap_or_else(|e| panic!("podman has no {tagged}: {e:#}"));
    }
    assert!(!whole.iter().any(|listed| listed.contains("app-a")), "app-a cannot be whole in a volume: {whole:?}");

    // hpn joins the set again: app-a loads from all volumes together.
    let site = Workspace::new();
    site.hpn(args_with_inputs(&["load"], &volumes)).assert_ok();
    let refs = site.store_refs();
    assert!(refs.iter().any(|name| name.contains("app-a")), "{refs:?}");
    site.assert_store_verifies();
    work.hpn(args_with_inputs(&["verify"], &volumes).into_iter().filter(|arg| *arg != "-i")).assert_ok();
}

/// A set of [app-a, multi, zstd] at 256 KiB: base and other layers larger than a volume are cut
/// into parts.
fn parted_set(work: &Workspace, seeded: &common::Seeded, output: &str, extra: &[&str]) -> Vec<PathBuf> {
    let mut args = vec!["save"];
    for name in ["app-a", "multi", "zstd"] {
        args.push(seeded.fixtures.image(name).reference.as_str());
    }
    let stem = output.split('.').next().unwrap();
    args.extend(["-o", output, "--split", "256K"]);
    args.extend(extra);
    work.hpn(&args).assert_ok();
    volumes_of(work.path(), stem)
}

#[test]
fn shuffled_volumes_with_parts_load_and_push_back_every_digest_and_two_saves_are_identical() {
    let seeded = seeded_registry_with(&["app-a", "multi", "zstd"]);
    let work = Workspace::new();
    let volumes = parted_set(&work, &seeded, "parts.tar", &[]);
    assert!(volumes.len() >= 4, "{volumes:?}");
    let parts: Vec<String> = volumes
        .iter()
        .flat_map(|volume| tar_list(volume))
        .filter(|name| name.starts_with("hpn-parts/") && name.len() > 10)
        .collect();
    assert!(!parts.is_empty(), "no blob was cut into parts");
    for volume in &volumes {
        assert!(fs::metadata(volume).unwrap().len() <= 256 * 1024, "{} is over 256 KiB", volume.display());
    }
    let bill = bill(&volumes[0]);
    let part = bill["blobs"].as_array().unwrap().iter().find(|blob| blob.get("part").is_some()).unwrap();
    assert!(part["part"]["digest"].as_str().unwrap().starts_with("sha256:"), "{part:#}");

    // Reproducible: a second save of the same list, from a fresh store, is byte for byte the same.
    let again = Workspace::new();
    let second = parted_set(&again, &seeded, "parts.tar", &[]);
    assert_eq!(second.len(), volumes.len());
    for (first, second) in volumes.iter().zip(&second) {
        assert!(fs::read(first).unwrap() == fs::read(second).unwrap(), "{} differs between two saves", first.display());
    }

    // Shuffled: last first, then the rest reversed.
    let mut shuffled = volumes.clone();
    shuffled.rotate_right(1);
    shuffled[1..].reverse();
    let site = Workspace::new();
    site.hpn(args_with_inputs(&["load"], &shuffled)).assert_ok();
    site.assert_store_verifies();
    let registry = Registry::start().expect("the site's registry");
    let run = site.hpn(args_with_inputs(&["push", "-r", registry.addr()], &shuffled));
    run.assert_ok();
    for name in ["app-a", "zstd"] {
        let image = seeded.fixtures.image(name);
        let pushed = registry.manifest(name, &image.tags[0]).expect("pushed manifest");
        assert_eq!(pushed.digest.to_string(), image.digest, "{name} changed digest");
    }
    // One platform of the index was saved: its manifest is what goes up.
    let multi = seeded.fixtures.image("multi");
    assert_eq!(registry.manifest("multi", "1").unwrap().digest.to_string(), multi.amd64().manifest.digest);

    // Compressed volumes are cut the same way and stay under the size.
    let packed = parted_set(&again, &seeded, "packed.tar.zst", &["--compress", "zstd"]);
    assert!(
        packed.len() >= volumes.len() && packed.iter().all(|volume| volume.to_string_lossy().ends_with(".tar.zst"))
    );
    for volume in &packed {
        assert!(fs::metadata(volume).unwrap().len() <= 256 * 1024, "{} is over 256 KiB", volume.display());
    }
    again.hpn(args_with_inputs(&["verify"], &packed).into_iter().filter(|arg| *arg != "-i")).assert_ok();
}

#[test]
fn missing_duplicate_foreign_and_corrupt_volumes_are_named_and_nothing_partial_is_recorded() {
    let seeded = seeded_registry_with(&["app-a", "multi", "zstd"]);
    let work = Workspace::new();
    let volumes = parted_set(&work, &seeded, "set.tar", &[]);
    let verify =
        |inputs: &[PathBuf]| work.hpn(args_with_inputs(&["verify"], inputs).into_iter().filter(|arg| *arg != "-i"));

    // A volume missing: named, and the images needing it are not recorded.
    let missing = &volumes[1];
    let given: Vec<PathBuf> = volumes.iter().filter(|volume| *volume != missing).cloned().collect();
    let site = Workspace::new();
    let run = site.hpn(args_with_inputs(&["load"], &given));
    assert_ne!(run.code, 0);
    let missing_name = missing.file_name().unwrap().to_string_lossy().into_owned();
    assert!(run.stderr.contains(&missing_name) && run.stderr.contains("not given"), "{}", run.stderr);
    let missing_bill = bill(missing);
    for image in missing_bill["images"].as_array().unwrap() {
        let needs_missing = image["volumes"].as_array().unwrap().iter().any(|volume| *volume == 2);
        let name = image["name"].as_str().unwrap();
        if needs_missing {
            assert!(!site.store_refs().iter().any(|recorded| recorded == name), "{name} was recorded without volume 2");
        }
    }
    site.assert_store_verifies();
    let run = verify(&given);
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(&missing_name), "{}", run.stderr);

    // A volume given twice: the copy is named.
    let copy = work.path().join("copy-of-second.tar");
    fs::copy(&volumes[1], &copy).unwrap();
    let mut twice = volumes.clone();
    twice.push(copy.clone());
    let run = Workspace::new().hpn(args_with_inputs(&["load"], &twice));
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains("copy-of-second.tar") && run.stderr.contains("again"), "{}", run.stderr);
    assert_ne!(verify(&twice).code, 0);

    // A volume of another set in place of one of this set's.
    let other = Workspace::new();
    let mut args = vec!["save", seeded.fixtures.image("zstd").reference.as_str()];
    args.extend(["-o", "other.tar", "--split", "256K"]);
    other.hpn(&args).assert_ok();
    let foreign = volumes_of(other.path(), "other");
    let mut mixed = given.clone();
    mixed.push(foreign[0].clone());
    let run = Workspace::new().hpn(args_with_inputs(&["load"], &mixed));
    assert_ne!(run.code, 0);
    assert!(run.stderr.contains(&missing_name), "{}", run.stderr);
    let run = verify(&mixed);
    assert_ne!(run.code, 0);

    // Corrupt: a byte flipped in a whole blob, in a part, in the bill; each named.
    let bill_of_first = bill(&volumes[0]);
    let blobs = bill_of_first["blobs"].as_array().unwrap();
    let whole = blobs.iter().find(|blob| blob.get("part").is_none() && blob["size"].as_u64().unwrap() > 1000).unwrap();
    // A part of app-a's base layer, which load needs (a part of a blob no image loaded needs,
    // such as docker's uncompressed copy of a zstd layer, only verify reads).
    let base_layer = &seeded.fixtures.image("app-a").amd64().layers[0].digest;
    let part = blobs.iter().find(|blob| blob.get("part").is_some() && blob["digest"] == base_layer.as_str()).unwrap();
    let cases = [
        (whole["volume"].as_u64().unwrap(), format!("blobs/sha256/{}", &whole["digest"].as_str().unwrap()[7..]), 500),
        (
            part["volume"].as_u64().unwrap(),
            format!(
                "hpn-parts/{}.{:03}",
                &part["digest"].as_str().unwrap()[7..],
                part["part"]["number"].as_u64().unwrap()
            ),
            100,
        ),
        (1, "hpn-contents.json".to_owned(), 40),
    ];
    for (volume, entry, into) in cases {
        let damaged_dir = Workspace::new();
        let damaged: Vec<PathBuf> = volumes
            .iter()
            .map(|path| {
                let copy = damaged_dir.path().join(path.file_name().unwrap());
                fs::copy(path, &copy).unwrap();
                copy
            })
            .collect();
        flip_byte(&damaged[volume as usize - 1], &entry, into);
        let site = Workspace::new();
        let run = site.hpn(args_with_inputs(&["load"], &damaged));
        assert_ne!(run.code, 0, "a flipped byte in {entry} loaded");
        site.assert_store_verifies();
        let run = damaged_dir.hpn(args_with_inputs(&["verify"], &damaged).into_iter().filter(|arg| *arg != "-i"));
        assert_ne!(run.code, 0, "verify passed a flipped byte in {entry}");
        let named = damaged[volume as usize - 1].file_name().unwrap().to_string_lossy().into_owned();
        assert!(run.stderr.contains(&named) || run.stderr.contains(&entry), "{entry}: {}", run.stderr);
    }
}

/// The planned volumes of a `--json save --dry-run --split` run, each as (file name, bytes, images).
fn planned_volumes(plan: &serde_json::Value) -> Vec<(String, u64, Vec<String>)> {
    plan["volume_plan"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|volume| {
            let path = PathBuf::from(volume["path"].as_str().unwrap());
            let images = volume["images"].as_array().unwrap().iter().map(|name| name.as_str().unwrap().to_owned());
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                volume["bytes"].as_u64().unwrap(),
                images.collect(),
            )
        })
        .collect()
}

/// The volumes a real run wrote, described as [`planned_volumes`] describes a plan.
fn written_volumes(volumes: &[PathBuf]) -> Vec<(String, u64, Vec<String>)> {
    volumes
        .iter()
        .map(|volume| {
            let name = volume.file_name().unwrap().to_string_lossy().into_owned();
            (name, fs::metadata(volume).unwrap().len(), indexed_names(volume))
        })
        .collect()
}

/// The blob `hex` as a set of volumes holds it: whole in one, or in parts.
fn blob_from_volumes(volumes: &[PathBuf], hex: &str) -> Vec<u8> {
    let whole = format!("blobs/sha256/{hex}");
    if let Some(volume) = volumes.iter().find(|volume| tar_list(volume).contains(&whole)) {
        return tar_entry(volume, &whole);
    }
    let mut parts: Vec<(u32, Vec<u8>)> = Vec::new();
    for volume in volumes {
        for name in tar_list(volume) {
            if let Some(number) = name.strip_prefix(&format!("hpn-parts/{hex}.")) {
                parts.push((number.parse().unwrap(), tar_entry(volume, &name)));
            }
        }
    }
    assert!(!parts.is_empty(), "no volume holds {hex}");
    parts.sort_by_key(|(number, _)| *number);
    parts.into_iter().flat_map(|(_, bytes)| bytes).collect()
}

/// The files in `dir`, but the store.
fn files_beside_the_store(work: &Workspace) -> Vec<String> {
    let store = work.store();
    let mut names: Vec<String> = fs::read_dir(work.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| *path != store)
        .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_dry_run_plans_the_volumes_split_writes_and_writes_nothing() {
    let seeded = seeded_registry_with(&["app-a", "multi", "zstd"]);
    let work = Workspace::new();
    let before = files_beside_the_store(&work);
    let save = |names: &[&str], dry_run: bool, json: bool| {
        let mut args: Vec<String> = Vec::new();
        if json {
            args.push("--json".into());
        }
        args.push("save".into());
        if dry_run {
            args.push("--dry-run".into());
        }
        args.extend(names.iter().map(|name| seeded.fixtures.image(name).reference.clone()));
        args.extend(["-o", "set.tar", "--split", "256K"].map(String::from));
        let run = work.hpn(&args);
        run.assert_ok();
        run
    };

    // No zstd layer: every size is in a descriptor, so the plan is exactly what --split writes.
    let plan = save(&["app-a", "multi"], true, true).json();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["volume_plan"]["estimated"], serde_json::json!([]), "{plan:#}");
    // Attachments are not looked for by a dry run, and the plan says so.
    assert_eq!(plan["volume_plan"]["attachments_left_out"], true, "{plan:#}");
    assert_eq!(files_beside_the_store(&work), before, "a dry run wrote a file");
    assert!(!work.store().exists(), "a dry run created the store");
    let planned = planned_volumes(&plan);
    let planned_parts: usize = plan["volume_plan"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|volume| volume["parts"].as_array().unwrap().len())
        .sum();
    assert!(planned.len() >= 3 && planned_parts > 0, "{plan:#}");
    let human = save(&["app-a", "multi"], true, false);
    assert!(human.stdout.contains("would write") && human.stdout.contains("set.001.tar"), "{}", human.stdout);
    assert!(human.stdout.contains("part 1/"), "{}", human.stdout);

    save(&["app-a", "multi"], false, false);
    let volumes = volumes_of(work.path(), "set");
    assert_eq!(written_volumes(&volumes), planned, "the plan differs from the volumes written");
    let written_parts = volumes
        .iter()
        .flat_map(|volume| tar_list(volume))
        .filter(|name| name.starts_with("hpn-parts/") && name.len() > 10);
    assert_eq!(written_parts.count(), planned_parts);

    // Kept aside, as the base of a differential set below.
    let first = work.path().join("first");
    fs::create_dir(&first).unwrap();
    let first_volumes: Vec<PathBuf> = volumes
        .iter()
        .map(|volume| {
            let kept = first.join(volume.file_name().unwrap());
            fs::rename(volume, &kept).unwrap();
            kept
        })
        .collect();

    // A zstd layer's uncompressed copy has no size in any descriptor: the plan says it estimates it.
    let zstd = seeded.fixtures.image("zstd");
    let zstd_layer = zstd.amd64().layers.iter().find(|layer| layer.media_type.ends_with("+zstd")).unwrap();
    let plan = save(&["app-a", "multi", "zstd"], true, true).json();
    let estimated = plan["volume_plan"]["estimated"].as_array().unwrap();
    assert_eq!(estimated.len(), 1, "{plan:#}");
    assert_eq!(estimated[0]["layer"], zstd_layer.digest.as_str());
    assert_eq!(estimated[0]["diff_id"], zstd_layer.diff_id.as_str());
    let human = save(&["app-a", "multi", "zstd"], true, false);
    assert!(human.stdout.contains("estimated: the uncompressed copies of 1 zstd layer(s)"), "{}", human.stdout);

    // Where the store holds the copy (under its DiffID, as a warm save keeps it), the size is exact.
    save(&["app-a", "multi", "zstd"], false, false);
    let volumes = volumes_of(work.path(), "set");
    let copy_hex = zstd_layer.diff_id.trim_start_matches("sha256:");
    let copy_path = work.store().join("blobs/sha256").join(copy_hex);
    if !copy_path.exists() {
        fs::write(&copy_path, blob_from_volumes(&volumes, copy_hex)).unwrap();
    }
    let plan = save(&["app-a", "multi", "zstd"], true, true).json();
    assert_eq!(plan["volume_plan"]["estimated"], serde_json::json!([]), "{plan:#}");
    assert_eq!(written_volumes(&volumes), planned_volumes(&plan), "the plan differs from the volumes written");
    work.assert_store_verifies();

    // A differential set over the first volumes, the copy's size known: planned as it is written,
    // the base's layers and unchanged images left out.
    let mut delta = vec!["save".to_owned()];
    delta.extend(["app-a", "multi", "zstd"].map(|name| seeded.fixtures.image(name).reference.clone()));
    for volume in &first_volumes {
        delta.extend(["--since".to_owned(), volume.to_str().unwrap().to_owned()]);
    }
    delta.extend(["-o", "delta.tar", "--split", "256K"].map(String::from));
    let mut planned_delta = vec!["--json".to_owned()];
    planned_delta.extend(delta.iter().cloned());
    planned_delta.insert(2, "--dry-run".to_owned());
    let plan = work.hpn(&planned_delta);
    plan.assert_ok();
    work.hpn(&delta).assert_ok();
    let delta_volumes = volumes_of(work.path(), "delta");
    assert_eq!(written_volumes(&delta_volumes), planned_volumes(&plan.json()), "the differential plan differs");
    assert!(
        plan.json()["volume_plan"]["volumes"][0]["images"] == serde_json::json!([zstd.reference]),
        "{}",
        plan.stdout
    );
}
