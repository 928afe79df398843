//! The data plane over HTTP: a store behind an axum listener, driven with
//! reqwest.

use super::*;
use crate::emulator::blob::{SasAccess, StorageConfig};
use crate::emulator::clock::SimClock;

struct Srv {
    store: Arc<BlobStore>,
    client: reqwest::Client,
    _task: tokio::task::JoinHandle<()>,
}

async fn serve(scale: f64, cfg: StorageConfig) -> Srv {
    let store = BlobStore::new(SimClock::new(scale), cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    store.set_base_url(&format!("http://{addr}"));
    let s2 = store.clone();
    let app = axum::Router::new().fallback(move |req: Request| {
        let s = s2.clone();
        async move { handle(s, req).await }
    });
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    Srv {
        store,
        client,
        _task: task,
    }
}

fn with(url: &str, extra: &str) -> String {
    format!("{url}&{extra}")
}

fn code(r: &reqwest::Response) -> String {
    r.headers()
        .get("x-ms-error-code")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

fn parse_list(xml: &str) -> (Vec<(bool, u64, u64)>, Option<String>) {
    assert!(
        xml.starts_with("\u{FEFF}<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<PageList>"),
        "{xml}"
    );
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find("Range><Start>") {
        let clear = rest[..i].ends_with("<Clear");
        let r = &rest[i + 13..];
        let s: u64 = r[..r.find('<').unwrap()].parse().unwrap();
        let e0 = r.find("<End>").unwrap() + 5;
        let e: u64 = r[e0..e0 + r[e0..].find('<').unwrap()].parse().unwrap();
        out.push((clear, s, e));
        rest = &r[e0..];
    }
    let next = xml.find("<NextMarker>").map(|i| {
        let r = &xml[i + 12..];
        r[..r.find('<').unwrap()].to_string()
    });
    (out, next)
}

async fn list_all(
    srv: &Srv,
    url: &str,
    prev: Option<&str>,
    maxresults: Option<usize>,
) -> Vec<(bool, u64, u64)> {
    let mut out = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut u = with(url, "comp=pagelist");
        if let Some(m) = maxresults {
            u = with(&u, &format!("maxresults={m}"));
        }
        if let Some(m) = &marker {
            u = with(
                &u,
                &format!(
                    "marker={}",
                    url::form_urlencoded::byte_serialize(m.as_bytes()).collect::<String>()
                ),
            );
        }
        let mut rq = srv.client.get(&u).header("x-ms-version", "2025-05-05");
        if let Some(p) = prev {
            rq = rq.header("x-ms-previous-snapshot-url", p);
        }
        let r = rq.send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().contains_key("x-ms-blob-content-length"));
        let (ranges, next) = parse_list(&r.text().await.unwrap());
        out.extend(ranges);
        match next {
            Some(m) => marker = Some(m),
            None => break,
        }
    }
    out
}

#[tokio::test]
async fn crc64_matches_the_recorded_fixture() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/azure/fixtures/storage/GetManagedDiskPageRangesDiffAsync.json"
    );
    let Ok(text) = std::fs::read_to_string(path) else {
        eprintln!("fixture not found at {path}; skipping");
        return;
    };
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = v["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ResponseHeaders"]["x-ms-content-crc64"].is_string())
        .unwrap();
    let body = BASE64_STANDARD
        .decode(entry["RequestBody"].as_str().unwrap())
        .unwrap();
    let want = entry["ResponseHeaders"]["x-ms-content-crc64"]
        .as_str()
        .unwrap();
    assert_eq!(BASE64_STANDARD.encode(crc64(&body)), want);
    assert_eq!(want, "dgpPfh+29o8=");
}

#[tokio::test]
async fn head_get_and_page_list() {
    let srv = serve(
        1.0,
        StorageConfig {
            page_list_page_size: 3,
            ..Default::default()
        },
    )
    .await;
    let len = 256 * MIB + 512;
    let id = srv.store.create_source(len, 0.5, 4);
    let url = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
    let r = srv.client.head(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-length"], len.to_string().as_str());
    assert_eq!(r.headers()["x-ms-blob-type"], "PageBlob");
    assert_eq!(r.headers()["x-ms-blob-sequence-number"], "0");
    for h in [
        "x-ms-request-id",
        "x-ms-version",
        "date",
        "etag",
        "last-modified",
    ] {
        assert!(r.headers().contains_key(h), "{h}");
    }
    // Ranged read equals the store's bytes.
    let r = srv
        .client
        .get(&url)
        .header("x-ms-range", "bytes=1000-70000")
        .header("x-ms-range-get-content-crc64", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(
        r.headers()["content-range"],
        format!("bytes 1000-70000/{len}").as_str()
    );
    let crc = r.headers()["x-ms-content-crc64"]
        .to_str()
        .unwrap()
        .to_string();
    let got = r.bytes().await.unwrap();
    assert_eq!(got.to_vec(), srv.store.read(&id, 1000, 69001).unwrap());
    assert_eq!(crc, BASE64_STANDARD.encode(crc64(&got)));
    // Out of range.
    let r = srv
        .client
        .get(&url)
        .header("Range", format!("bytes={len}-"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(code(&r), "InvalidRange");
    // Whole blob too large without a range.
    let r = srv.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 400);
    // Footer readable.
    let r = srv
        .client
        .get(&url)
        .header("x-ms-range", format!("bytes={}-{}", len - 512, len - 1))
        .send()
        .await
        .unwrap();
    assert_eq!(&r.bytes().await.unwrap()[..8], b"conectix");
    // Page list: paged by 3, every range once, matches the store.
    let all = list_all(&srv, &url, None, None).await;
    let want: Vec<(bool, u64, u64)> = {
        let l = srv.store.page_list(&id, None, 0, len, usize::MAX).unwrap();
        l.ranges
            .iter()
            .map(|r| (false, r.start, r.end - 1))
            .collect()
    };
    assert!(want.len() > 3);
    assert_eq!(all, want);
    assert_eq!(list_all(&srv, &url, None, Some(2)).await, want);
    // maxresults <= 0 and bad markers are refused.
    let r = srv
        .client
        .get(with(&url, "comp=pagelist&maxresults=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (400, "OutOfRangeQueryParameterValue".into())
    );
    let r = srv
        .client
        .get(with(&url, "comp=pagelist&marker=zzz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Old versions cannot page.
    let r = srv
        .client
        .get(with(&url, "comp=pagelist&maxresults=5"))
        .header("x-ms-version", "2019-12-12")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (400, "InvalidHeaderValue".into())
    );
    // Old version without paging: everything at once, no NextMarker (as recorded).
    let r = srv
        .client
        .get(with(&url, "comp=pagelist"))
        .header("x-ms-version", "2020-02-10")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(!body.contains("NextMarker"));
    assert_eq!(parse_list(&body).0, want);
    // Restricted by x-ms-range.
    let (s0, e0) = (want[1].1 + 512, want[1].2);
    let r = srv
        .client
        .get(with(&url, "comp=pagelist"))
        .header("x-ms-range", format!("bytes={s0}-{e0}"))
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    let tail = format!(
        "<PageList><PageRange><Start>{s0}</Start><End>{e0}</End></PageRange><NextMarker /></PageList>"
    );
    assert!(body.ends_with(&tail), "{body}");
    assert!(srv.store.stats().page_list_calls >= 5);
}

#[tokio::test]
async fn sas_failures() {
    let srv = serve(1000.0, StorageConfig::default()).await;
    let id = srv.store.create_source(32 * MIB + 512, 0.5, 4);
    let url = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
    // Tampered signature.
    let bad = url.replace("&sig=", "&sig=x");
    let r = srv.client.head(&bad).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "AuthenticationFailed".into())
    );
    let r = srv
        .client
        .get(&bad)
        .header("x-ms-range", "bytes=0-511")
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        body.contains(
            "<Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request."
        ),
        "{body}"
    );
    // Read SAS cannot write.
    let r = srv
        .client
        .put(with(&url, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-511")
        .body(vec![1u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "AuthorizationPermissionMismatch".into())
    );
    // Unknown blob.
    let gone = url.replace(&id.0, "md-impexp-000000000000");
    let r = srv.client.head(&gone).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (404, "BlobNotFound".into())
    );
    // Revoked.
    srv.store.revoke_all(&id);
    let r = srv.client.head(&url).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "AuthenticationFailed".into())
    );
    // Expired: 2,000 simulated seconds = 2 s real at scale 1000, so the
    // first request (one loopback HEAD) lands inside the lifetime even on a
    // loaded machine (it used to be 10 ms, which a busy 2-core box missed);
    // the second is sent once the store's own clock is past the expiry.
    let lifetime = 2_000.0;
    let short = srv.store.grant(&id, SasAccess::Read, lifetime).unwrap();
    // (Read after the grant: its expiry is at most this plus the lifetime.)
    let granted_at = srv.store.clock().now();
    assert_eq!(srv.client.head(&short).send().await.unwrap().status(), 200);
    while srv.store.clock().now() <= granted_at + lifetime {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let r = srv.client.head(&short).send().await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "AuthenticationFailed".into())
    );
    // Bad version header.
    let ok = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
    let r = srv
        .client
        .head(&ok)
        .header("x-ms-version", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (400, "InvalidHeaderValue".into())
    );
}

#[tokio::test]
async fn put_page_limits_and_clear() {
    let srv = serve(10_000.0, StorageConfig::default()).await;
    let len = 64 * MIB + 512;
    let id = srv.store.create_upload(len);
    let w = srv.store.grant(&id, SasAccess::Write, 1e8).unwrap();
    let put = |range: String, body: Vec<u8>| {
        srv.client
            .put(with(&w, "comp=page"))
            .header("x-ms-version", "2025-05-05")
            .header("x-ms-page-write", "update")
            .header("x-ms-range", range)
            .body(body)
            .send()
    };
    // 4 MiB works, one page more is 413.
    let body: Vec<u8> = (0..4 * MIB).map(|i| (i % 251) as u8).collect();
    let r = put(format!("bytes=0-{}", 4 * MIB - 1), body.clone())
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["x-ms-request-server-encrypted"], "true");
    assert_eq!(r.headers()["x-ms-blob-sequence-number"], "0");
    assert_eq!(
        r.headers()["x-ms-content-crc64"],
        BASE64_STANDARD.encode(crc64(&body)).as_str()
    );
    assert!(r.headers().contains_key("etag") && r.headers().contains_key("last-modified"));
    let r = put(
        format!("bytes=0-{}", 4 * MIB + 511),
        vec![0u8; (4 * MIB + 512) as usize],
    )
    .await
    .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (413, "RequestBodyTooLarge".into())
    );
    // Misaligned.
    let r = put("bytes=100-611".into(), vec![0u8; 512]).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (416, "InvalidPageRange".into())
    );
    // Body length differs from the range.
    let r = put("bytes=0-1023".into(), vec![0u8; 512]).await.unwrap();
    assert_eq!(r.status(), 400);
    // Past the end.
    let r = put(format!("bytes={}-{}", len, len + 511), vec![0u8; 512])
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    // Wrong client CRC.
    let r = srv
        .client
        .put(with(&w, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-511")
        .header("x-ms-content-crc64", "AAAAAAAAAAA=")
        .body(vec![7u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (400, "Crc64Mismatch".into())
    );
    assert_eq!(srv.store.read(&id, 0, 4 * MIB).unwrap(), body);
    // Clear may span more than 4 MiB.
    let r = srv
        .client
        .put(with(&w, "comp=page"))
        .header("x-ms-page-write", "clear")
        .header("x-ms-range", format!("bytes=0-{}", 8 * MIB - 1))
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(srv.store.allocated_bytes(&id), Some(0));
    let st = srv.store.stats();
    assert_eq!(st.put_page, 2);
    assert_eq!(st.bytes_written, 4 * MIB);
}

#[tokio::test]
async fn put_page_from_url_copies_and_checks_the_source() {
    let srv = serve(10_000.0, StorageConfig::default()).await;
    let len = 48 * MIB + 512;
    let src = srv.store.create_source(len, 0.6, 8);
    let dst = srv.store.create_upload(len);
    let r_sas = srv.store.grant(&src, SasAccess::Read, 1e8).unwrap();
    let w_sas = srv.store.grant(&dst, SasAccess::Write, 1e8).unwrap();
    let copy = |src_url: String, a: u64, l: u64| {
        srv.client
            .put(with(&w_sas, "comp=page"))
            .header("x-ms-version", "2025-05-05")
            .header("x-ms-page-write", "update")
            .header("x-ms-range", format!("bytes={}-{}", a, a + l - 1))
            .header("x-ms-source-range", format!("bytes={}-{}", a, a + l - 1))
            .header("x-ms-copy-source", src_url)
            .header("content-length", "0")
            .send()
    };
    // Copy the allocated ranges in 4 MiB pieces, as the copy engine would.
    for (_, s, e) in list_all(&srv, &r_sas, None, None).await {
        let mut a = s;
        while a <= e {
            let l = (4 * MIB).min(e + 1 - a);
            let r = copy(r_sas.clone(), a, l).await.unwrap();
            assert_eq!(r.status(), 201, "{:?}", r.text().await);
            a += l;
        }
    }
    assert_eq!(srv.store.digest(&src), srv.store.digest(&dst));
    assert!(srv.store.footer_valid(&dst));
    assert!(srv.store.stats().put_page_from_url > 0);
    // Source CRC given and right / wrong.
    let want = crc64(&srv.store.read(&src, 0, 4 * MIB).unwrap());
    let ok = srv
        .client
        .put(with(&w_sas, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-4194303")
        .header("x-ms-source-range", "bytes=0-4194303")
        .header("x-ms-copy-source", &r_sas)
        .header("x-ms-source-content-crc64", BASE64_STANDARD.encode(want))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    assert_eq!(
        ok.headers()["x-ms-content-crc64"],
        BASE64_STANDARD.encode(want).as_str()
    );
    let bad = srv
        .client
        .put(with(&w_sas, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-4194303")
        .header("x-ms-source-range", "bytes=0-4194303")
        .header("x-ms-copy-source", &r_sas)
        .header("x-ms-source-content-crc64", "AAAAAAAAAAA=")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Both hashes.
    let r = srv
        .client
        .put(with(&w_sas, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-511")
        .header("x-ms-source-range", "bytes=0-511")
        .header("x-ms-copy-source", &r_sas)
        .header("x-ms-source-content-crc64", "AAAAAAAAAAA=")
        .header("x-ms-source-content-md5", "AAAAAAAAAAAAAAAAAAAAAA==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // More than 4 MiB.
    let r = copy(r_sas.clone(), 0, 4 * MIB + 512).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (413, "RequestBodyTooLarge".into())
    );
    // Misaligned, mismatched lengths, non-zero body.
    let r = copy(r_sas.clone(), 512, 1000).await.unwrap();
    assert_eq!(r.status(), 416);
    let r = srv
        .client
        .put(with(&w_sas, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-1023")
        .header("x-ms-source-range", "bytes=0-511")
        .header("x-ms-copy-source", &r_sas)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = srv
        .client
        .put(with(&w_sas, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-511")
        .header("x-ms-source-range", "bytes=0-511")
        .header("x-ms-copy-source", &r_sas)
        .body(vec![0u8; 512])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Source beyond its end.
    let r = srv
        .client
        .put(with(&w_sas, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-511")
        .header("x-ms-source-range", format!("bytes={}-{}", len, len + 511))
        .header("x-ms-copy-source", &r_sas)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (416, "CannotVerifyCopySource".into())
    );
    // Revoked source SAS: CannotVerifyCopySource mirroring 403.
    srv.store.revoke_all(&src);
    let r = copy(r_sas.clone(), 0, 512).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "CannotVerifyCopySource".into())
    );
    assert_eq!(r.headers()["x-ms-copy-source-status-code"], "403");
    assert_eq!(
        r.headers()["x-ms-copy-source-error-code"],
        "AuthenticationFailed"
    );
    // Unknown source blob: 404 BlobNotFound.
    let r = copy(r_sas.replace(&src.0, "md-impexp-0000000000ff"), 0, 512)
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (404, "CannotVerifyCopySource".into())
    );
    assert_eq!(r.headers()["x-ms-copy-source-error-code"], "BlobNotFound");
    // Destination with a read SAS: 403.
    let src2 = srv.store.create_source(len, 0.1, 9);
    let r2 = srv.store.grant(&src2, SasAccess::Read, 1e8).unwrap();
    let r = srv
        .client
        .put(with(&r2, "comp=page"))
        .header("x-ms-page-write", "update")
        .header("x-ms-range", "bytes=0-511")
        .header("x-ms-source-range", "bytes=0-511")
        .header("x-ms-copy-source", &r2)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "AuthorizationPermissionMismatch".into())
    );
}

#[tokio::test]
async fn diff_over_http() {
    let srv = serve(
        1000.0,
        StorageConfig {
            page_list_page_size: 2,
            ..Default::default()
        },
    )
    .await;
    let len = 32 * MIB + 512;
    let disk = srv.store.create_source(len, 0.5, 3);
    let s1 = srv.store.clone_blob(&disk).unwrap();
    srv.store.guest_write(&disk, 4 * MIB, MIB, 77);
    srv.store.guest_write(&disk, 20 * MIB, 8192, 78);
    srv.store.guest_write(&disk, 30 * MIB, 4096, 79);
    let s2 = srv.store.clone_blob(&disk).unwrap();
    let u1 = srv.store.grant(&s1, SasAccess::Read, 1e8).unwrap();
    let u2 = srv.store.grant(&s2, SasAccess::Read, 1e8).unwrap();
    let d = list_all(&srv, &u2, Some(&u1), None).await;
    assert_eq!(
        d,
        vec![
            (false, 4 * MIB, 5 * MIB - 1),
            (false, 20 * MIB, 20 * MIB + 8191),
            (false, 30 * MIB, 30 * MIB + 4095)
        ]
    );
    // Previous snapshot SAS revoked: 403.
    srv.store.revoke_all(&s1);
    let r = srv
        .client
        .get(with(&u2, "comp=pagelist"))
        .header("x-ms-previous-snapshot-url", &u1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), code(&r)),
        (403, "AuthenticationFailed".into())
    );
    // prevsnapshot is refused for managed disks.
    let r = srv
        .client
        .get(with(
            &u2,
            "comp=pagelist&prevsnapshot=2020-07-13T19:24:09.8561552Z",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Another disk's snapshot: 409.
    let other = srv.store.create_source(len, 0.5, 4);
    let uo = srv.store.grant(&other, SasAccess::Read, 1e8).unwrap();
    let r = srv
        .client
        .get(with(&u2, "comp=pagelist"))
        .header("x-ms-previous-snapshot-url", &uo)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[tokio::test]
async fn server_busy_is_injected() {
    let srv = serve(
        1.0,
        StorageConfig {
            server_busy_rate: 1.0,
            ..Default::default()
        },
    )
    .await;
    let id = srv.store.create_upload(MIB);
    let u = srv.store.grant(&id, SasAccess::Read, 1e8).unwrap();
    let r = srv
        .client
        .get(with(&u, "comp=pagelist"))
        .send()
        .await
        .unwrap();
    assert_eq!((r.status().as_u16(), code(&r)), (503, "ServerBusy".into()));
    assert_eq!(srv.store.stats().server_busy, 1);
    // The fault is visible to the router as a response extension.
    let req = Request::builder()
        .uri("/x/y/abcd")
        .body(Body::empty())
        .unwrap();
    let resp = handle(srv.store.clone(), req).await;
    assert_eq!(
        resp.extensions().get::<StorageFault>(),
        Some(&StorageFault("server_busy"))
    );
}

#[tokio::test]
async fn writes_are_paced_per_target_blob() {
    // Scale 100: 60 MiB/s simulated means 8 x 4 MiB (32 MiB) take >= 0.533 s
    // simulated = 5.3 ms real, whatever the client parallelism.
    let scale = 100.0;
    let srv = serve(scale, StorageConfig::default()).await;
    let len = 64 * MIB + 512;
    let src = srv.store.create_source(len, 1.0, 1);
    let dst = srv.store.create_upload(len);
    let r_sas = srv.store.grant(&src, SasAccess::Read, 1e6).unwrap();
    let w_sas = srv.store.grant(&dst, SasAccess::Write, 1e6).unwrap();
    let t0 = srv.store.clock().now();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let (c, w, r) = (srv.client.clone(), w_sas.clone(), r_sas.clone());
        tasks.push(tokio::spawn(async move {
            let a = i * 4 * MIB;
            let rg = format!("bytes={}-{}", a, a + 4 * MIB - 1);
            c.put(with(&w, "comp=page"))
                .header("x-ms-page-write", "update")
                .header("x-ms-range", &rg)
                .header("x-ms-source-range", &rg)
                .header("x-ms-copy-source", r)
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let elapsed = srv.store.clock().now() - t0;
    let expected = 32.0 * MIB as f64 / crate::emulator::blob::upload_bandwidth(len);
    assert!(elapsed >= expected * 0.99, "elapsed {elapsed} < {expected}");
}
