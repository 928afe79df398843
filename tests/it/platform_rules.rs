//! Azure's refusals that make the migration necessary, reproduced over HTTP
//! with the real client: the naive in-place path must fail.

use std::sync::Arc;
use std::time::Duration;

use ade2eah::azure::{self, ArmClient, AuthMode, AzureConfig, ErrorClass};
use serde_json::json;

use crate::support::*;

async fn client(rig: &Rig) -> ArmClient {
    let mut cfg = AzureConfig::new(
        url::Url::parse(&rig.emu.base_url()).unwrap(),
        azure::AzureCloud::Public,
    );
    cfg.poll_interval = Duration::from_millis(20);
    cfg.retry.base_delay = Duration::from_millis(20);
    let tokens = azure::token_source(AuthMode::None, &cfg).await.unwrap();
    ArmClient::new(cfg, tokens).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_decrypt_deallocate_enable_eah_is_refused() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("naive", 1));
    let c = client(&rig).await;
    let model = c.get_vm(&vm, false).await.unwrap().unwrap();
    let ext = model
        .parsed
        .resources
        .iter()
        .find(|e| {
            e.name
                .as_deref()
                .is_some_and(|n| n.contains("AzureDiskEncryption"))
        })
        .expect("ADE extension present");
    let ext_id = ade2eah::model::ResourceId::parse(ext.id.as_deref().unwrap()).unwrap();
    c.put_extension(&ext_id, &json!({"location": "westeurope", "properties": {
        "publisher": "Microsoft.Azure.Security", "type": "AzureDiskEncryption", "typeHandlerVersion": "2.2",
        "settings": {"EncryptionOperation": "DisableEncryption", "VolumeType": "All", "SequenceVersion": "1"}}})).await.unwrap();
    // Wait (simulated hours) until the guest reports decrypted.
    for _ in 0..400 {
        let iv = c.get_vm_instance_view(&vm).await.unwrap().unwrap();
        let raw = serde_json::to_value(&iv).unwrap();
        if ade2eah::step::observe::decryption_state(&raw)
            == ade2eah::step::DecryptionState::Complete
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    c.delete_extension(&ext_id).await.unwrap();
    c.deallocate_vm(&vm).await.unwrap();
    let err = c
        .patch_vm(
            &vm,
            &json!({"properties": {"securityProfile": {"encryptionAtHost": true}}}),
        )
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption"), "{msg}");
    assert!(
        matches!(azure::classify(&err), ErrorClass::Terminal { .. }),
        "a documented refusal is terminal"
    );
    let _ = Arc::new(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_sas_on_a_running_vm_disk_is_refused() {
    let rig = Rig::new().await;
    let vm = rig.emu.add_vm(windows("running-sas", 0));
    let c = client(&rig).await;
    let model = c.get_vm(&vm, false).await.unwrap().unwrap();
    let os = model
        .parsed
        .properties
        .as_ref()
        .and_then(|p| p.storage_profile.as_ref())
        .and_then(|s| s.os_disk.as_ref())
        .and_then(|o| o.managed_disk.as_ref())
        .and_then(|m| m.id.clone())
        .unwrap();
    let os = ade2eah::model::ResourceId::parse(&os).unwrap();
    let err = c
        .grant_access(&os, azure::SasAccess::Read, Duration::from_secs(3600))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("currently attached to running VM"),
        "{err}"
    );
    assert!(rig.emu.active_sas().is_empty());
}
