"""Drives the ade2eah emulator through Microsoft's Python SDKs.

Run by tests/it/sdk_conformance.rs (which starts the emulators and passes a
JSON config as the only argument); not meant to be run by hand, though it
works against any two emulators seeded with `ade2eah::emulator::demo_fleet`:

    python conformance.py '{"endpoint": "...", "endpoint_location_only": "...", ...}'

Config keys: endpoint (both LRO headers, VM listings paged), endpoint_location_only
(LROs answer with a Location header only), subscription, resource_group,
location, vms (every VM name of the seeded fleet), page_size, time_scale
(simulated seconds per real second), nic_hold_secs (simulated).

Every check asserts concrete values; the first failure raises and the script
exits 1 with a traceback. On success the last line of stdout is
`SDK-CONFORMANCE {"passed": [...names of the checks...]}`; the Rust test
compares that list with the checks it expects, so a check that did not run
fails the test too. Azure is the judge: a disagreement between the SDK and the
emulator is an emulator bug.

Secrets: the bearer token is fake and the SAS URLs are never printed.
"""

import json
import os
import struct
import sys
import time
import uuid

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.pipeline.policies import BearerTokenCredentialPolicy
from azure.mgmt.compute import ComputeManagementClient
from azure.storage.blob import BlobClient

MIB = 1024 * 1024
ARM_SCOPE = "https://management.azure.com/.default"
PASSED = []


def check(name):
    """Decorator: runs the check now and records its name when it passes."""

    def run(fn):
        fn()
        PASSED.append(name)
        print(f"ok {name}", flush=True)
        return fn

    return run


class FakeCredential:
    """A TokenCredential (azure.core.credentials protocol) with a fixed fake token."""

    def __init__(self):
        self.calls = 0

    def get_token(self, *scopes, **kwargs):
        assert scopes == (ARM_SCOPE,), scopes
        self.calls += 1
        return AccessToken("sdk-conformance-fake", int(time.time()) + 3600)


class LoopbackBearerPolicy(BearerTokenCredentialPolicy):
    """The SDK's own bearer policy, allowed on the emulator's plain-http
    loopback endpoint (azure-core refuses a token over http unless the
    request context says `enforce_https` is False)."""

    def on_request(self, request):
        request.context["enforce_https"] = False
        super().on_request(request)


def compute(endpoint, sub, cred):
    return ComputeManagementClient(
        cred,
        sub,
        base_url=endpoint,
        authentication_policy=LoopbackBearerPolicy(cred, ARM_SCOPE),
        # Retry-After from the emulator is honoured; this bounds the rest.
        polling_interval=0.2,
        retry_total=3,
        retry_backoff_factor=0.1,
    )


def vhd_footer(disk_size):
    """A fixed-VHD footer (cookie `conectix`, disk type 2, checksum) for a
    disk of `disk_size` bytes, as in the VHD specification."""
    f = bytearray(512)
    f[0:8] = b"conectix"
    struct.pack_into(">I", f, 8, 2)  # features
    struct.pack_into(">I", f, 12, 0x00010000)  # format version
    struct.pack_into(">Q", f, 16, 0xFFFFFFFFFFFFFFFF)  # data offset (fixed)
    struct.pack_into(">I", f, 24, 0x2E000000)  # timestamp
    f[28:32] = b"sdkc"
    struct.pack_into(">I", f, 32, 0x00010000)
    f[36:40] = b"Wi2k"
    struct.pack_into(">Q", f, 40, disk_size)
    struct.pack_into(">Q", f, 48, disk_size)
    struct.pack_into(">HBB", f, 56, 1024, 16, 63)  # geometry (not checked here)
    struct.pack_into(">I", f, 60, 2)  # disk type: fixed
    f[68:84] = uuid.UUID("6c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5").bytes
    checksum = (~sum(b for i, b in enumerate(f) if not 64 <= i < 68)) & 0xFFFFFFFF
    struct.pack_into(">I", f, 64, checksum)
    return bytes(f)


def pattern(seed, n):
    """`n` deterministic non-zero bytes."""
    return bytes(((seed * 31 + i * 7) % 251) + 1 for i in range(n))


def ranges_of(blob):
    """Page ranges of a blob as (start, end-inclusive) tuples, via the SDK."""
    filled, cleared = blob.get_page_ranges()
    assert cleared == [], cleared
    return [(r["start"], r["end"]) for r in filled]


class Recorder:
    """`raw_response_hook`: records each response's URL, status and LRO headers."""

    def __init__(self):
        self.seen = []

    def __call__(self, response):
        h = response.http_response.headers
        self.seen.append(
            {
                "url": response.http_request.url,
                "status": response.http_response.status_code,
                "async": h.get("Azure-AsyncOperation"),
                "location": h.get("Location"),
            }
        )


def disk_round(client, cfg, suffix, location_only):
    """Upload disk, grant/revoke (LRO style of this emulator), page writes,
    page ranges, Put Page From URL, ranged reads, footer validation at revoke."""
    rg, loc = cfg["resource_group"], cfg["location"]
    size = 20 * MIB
    a_name, b_name = f"sdk-upload-a-{suffix}", f"sdk-upload-b-{suffix}"

    def create_upload(name):
        d = client.disks.begin_create_or_update(
            rg,
            name,
            {
                "location": loc,
                "sku": {"name": "Premium_LRS"},
                "properties": {
                    "osType": "Linux",
                    "creationData": {"createOption": "Upload", "uploadSizeBytes": size + 512},
                },
            },
        ).result()
        assert d.name == name, d.name
        assert d.properties.creation_data.create_option == "Upload"
        assert d.properties.creation_data.upload_size_bytes == size + 512
        assert d.properties.disk_state == "ReadyToUpload", d.properties.disk_state
        return d

    def grant(name, access):
        rec = Recorder()
        poller = client.disks.begin_grant_access(
            rg,
            name,
            {"access": access, "durationInSeconds": 3600},
            raw_response_hook=rec,
        )
        sas = poller.result().access_sas
        assert sas and sas.startswith("http") and "sig=" in sas, "a SAS URL"
        first = rec.seen[0]
        assert first["status"] == 202, first["status"]
        assert first["location"], "Location header on beginGetAccess"
        if location_only:
            assert first["async"] is None, "no Azure-AsyncOperation in Location-only mode"
            assert all("monitor=true" in s["url"] for s in rec.seen[1:]), "polled Location"
        else:
            assert first["async"], "Azure-AsyncOperation on beginGetAccess"
        return sas

    def revoke(name):
        rec = Recorder()
        client.disks.begin_revoke_access(rg, name, raw_response_hook=rec).result()
        first = rec.seen[0]
        assert first["status"] == 202, first["status"]
        if location_only:
            assert first["async"] is None and first["location"], first
        else:
            assert first["async"], first

    create_upload(a_name)
    a_sas = grant(a_name, "Write")
    assert client.disks.get(rg, a_name).properties.disk_state == "ActiveUpload"
    a = BlobClient.from_blob_url(a_sas)
    props = a.get_blob_properties()
    assert props.size == size + 512, props.size
    assert props.blob_type == "PageBlob", props.blob_type
    assert ranges_of(a) == [], "a new upload disk has no pages"

    first, second = pattern(1, 64 * 1024), pattern(2, 512 * 1024)
    a.upload_page(first, offset=0, length=len(first))
    a.upload_page(second, offset=8 * MIB, length=len(second))
    a.upload_page(vhd_footer(size), offset=size, length=512)
    want = [(0, 64 * 1024 - 1), (8 * MIB, 8 * MIB + 512 * 1024 - 1), (size, size + 511)]
    assert ranges_of(a) == want, ranges_of(a)
    got = a.download_blob(offset=8 * MIB + 1000, length=4096).readall()
    assert got == second[1000:5096], "ranged read of written pages"
    zeros = a.download_blob(offset=4 * MIB, length=1024).readall()
    assert zeros == bytes(1024), "unwritten pages read as zeros"
    revoke(a_name)
    assert client.disks.get(rg, a_name).properties.disk_state == "Unattached"

    # A second upload disk filled from the first with Put Page From URL.
    create_upload(b_name)
    b_sas = grant(b_name, "Write")
    a_read = grant(a_name, "Read")
    b = BlobClient.from_blob_url(b_sas)
    for start, end in ranges_of(BlobClient.from_blob_url(a_read)):
        off = start
        while off <= end:
            n = min(4 * MIB, end + 1 - off)
            b.upload_pages_from_url(a_read, offset=off, length=n, source_offset=off)
            off += n
    assert ranges_of(b) == want, ranges_of(b)
    got = b.download_blob(offset=100, length=60 * 1024).readall()
    assert got == first[100 : 100 + 60 * 1024], "ranged read after Put Page From URL"
    tail = b.download_blob(offset=size, length=512).readall()
    assert tail == vhd_footer(size), "footer copied"
    whole = b.download_blob(offset=8 * MIB, length=512 * 1024).readall()
    assert whole == second
    revoke(b_name)
    revoke(a_name)
    for n in (a_name, b_name):
        assert client.disks.get(rg, n).properties.disk_state == "Unattached"


def main():
    cfg = json.loads(sys.argv[1])
    sub, rg, loc = cfg["subscription"], cfg["resource_group"], cfg["location"]
    cred = FakeCredential()
    client = compute(cfg["endpoint"], sub, cred)
    client_loc = compute(cfg["endpoint_location_only"], sub, cred)
    fleet = sorted(cfg["vms"])

    @check("list_vms_paged")
    def _():
        pages = [list(p) for p in client.virtual_machines.list_all().by_page()]
        assert len(fleet) > cfg["page_size"], "the fleet spans pages"
        want_pages = -(-len(fleet) // cfg["page_size"])
        assert len(pages) == want_pages, (len(pages), want_pages)
        assert all(len(p) <= cfg["page_size"] for p in pages)
        names = sorted(vm.name for p in pages for vm in p)
        assert names == fleet, names
        in_rg = sorted(vm.name for vm in client.virtual_machines.list(rg))
        assert in_rg == fleet, in_rg
        assert cred.calls >= 1, "the SDK asked the credential for a token"

    @check("get_with_instance_view")
    def _():
        vm = client.virtual_machines.get(rg, "app-lin-01", expand="instanceView")
        assert vm.name == "app-lin-01"
        assert vm.properties.storage_profile.os_disk.os_type == "Linux"
        iv = vm.properties.instance_view
        codes = [s.code for s in iv.statuses]
        assert "ProvisioningState/succeeded" in codes, codes
        assert "PowerState/running" in codes, codes
        ext = {e.name: e for e in iv.extensions}
        assert "ade-tf" in ext, sorted(ext)
        assert ext["ade-tf"].type == "Microsoft.Azure.Security.AzureDiskEncryptionForLinux"
        assert ext["ade-tf"].statuses[0].level == "Info"
        assert len(iv.disks) == 2, [d.name for d in iv.disks]
        plain = client.virtual_machines.get(rg, "app-lin-01")
        assert plain.properties.instance_view is None, "no instanceView without $expand"
        direct = client.virtual_machines.instance_view(rg, "app-lin-01")
        assert [s.code for s in direct.statuses] == codes

    @check("list_extensions")
    def _():
        res = client.virtual_machine_extensions.list(rg, "app-lin-01")
        names = [e.name for e in res.value]
        assert names == ["ade-tf"], names
        e = res.value[0]
        assert e.type == "Microsoft.Compute/virtualMachines/extensions", e.type
        assert e.properties.publisher == "Microsoft.Azure.Security"
        assert e.properties.type == "AzureDiskEncryptionForLinux"
        assert e.properties.provisioning_state == "Succeeded"
        assert e.properties.instance_view is None
        x = client.virtual_machine_extensions.list(rg, "app-lin-01", expand="instanceView")
        iv = x.value[0].properties.instance_view
        assert iv.name == "ade-tf" and iv.statuses, iv
        assert iv.statuses[0].code.startswith("ProvisioningState/"), iv.statuses[0].code
        none = client.virtual_machine_extensions.list(rg, "plain-lin-01")
        assert list(none.value or []) == [], none.value

    @check("error_envelopes")
    def _():
        for call in (
            lambda: client.virtual_machines.get(rg, "no-such-vm"),
            lambda: client.virtual_machine_extensions.list(rg, "no-such-vm"),
            lambda: client.virtual_machine_extensions.get(rg, "app-lin-01", "no-such-ext"),
            lambda: client.disks.get(rg, "no-such-disk"),
        ):
            try:
                call()
                raise AssertionError("expected a 404")
            except ResourceNotFoundError as e:
                assert e.status_code == 404, e.status_code
                assert e.error is not None and e.error.code == "ResourceNotFound", e.error
        try:
            client.disks.begin_create_or_update(
                rg,
                "sdk-bad-upload",
                {
                    "location": loc,
                    "properties": {
                        "creationData": {"createOption": "Upload", "uploadSizeBytes": 20 * MIB + 513}
                    },
                },
            ).result()
            raise AssertionError("expected a 400")
        except HttpResponseError as e:
            assert e.status_code == 400, e.status_code
            assert e.error.code == "BadRequest", e.error.code
            assert "multiple of MiB" in e.error.message, e.error.message

    @check("extension_put_delete_lro")
    def _():
        body = {
            "location": loc,
            "properties": {
                "publisher": "Microsoft.Azure.Monitor",
                "type": "AzureMonitorLinuxAgent",
                "typeHandlerVersion": "1.0",
                "autoUpgradeMinorVersion": True,
            },
        }
        rec = Recorder()
        ext = client.virtual_machine_extensions.begin_create_or_update(
            rg, "app-lin-01", "sdk-ama", body, raw_response_hook=rec
        ).result()
        assert rec.seen[0]["status"] in (200, 201), rec.seen[0]
        assert rec.seen[0]["async"], "extension PUT is an LRO (Azure-AsyncOperation)"
        assert ext.name == "sdk-ama"
        assert ext.properties.provisioning_state == "Succeeded", ext.properties.provisioning_state
        assert ext.properties.type == "AzureMonitorLinuxAgent"
        names = sorted(e.name for e in client.virtual_machine_extensions.list(rg, "app-lin-01").value)
        assert names == ["ade-tf", "sdk-ama"], names
        x = client.virtual_machine_extensions.list(rg, "app-lin-01", expand="instanceView").value
        ama = next(e for e in x if e.name == "sdk-ama")
        assert ama.properties.instance_view.statuses[0].code == "ProvisioningState/succeeded"
        client.virtual_machine_extensions.begin_delete(rg, "app-lin-01", "sdk-ama").result()
        names = [e.name for e in client.virtual_machine_extensions.list(rg, "app-lin-01").value]
        assert names == ["ade-tf"], names
        try:
            client.virtual_machine_extensions.get(rg, "app-lin-01", "sdk-ama")
            raise AssertionError("deleted extension still there")
        except ResourceNotFoundError:
            pass

    @check("eah_refused_on_ever_ade_vm")
    def _():
        try:
            client.virtual_machines.begin_update(
                rg, "web-win-01", {"properties": {"securityProfile": {"encryptionAtHost": True}}}
            ).result()
            raise AssertionError("EAH accepted on a VM that had ADE")
        except HttpResponseError as e:
            assert e.status_code == 400, e.status_code
            assert e.error.code == "BadRequest", e.error.code
            assert (
                e.error.message
                == "Encryption at host is not allowed for a VM having disks that were encrypted with Azure Disk Encryption"
            ), e.error.message
        vm = client.virtual_machines.get(rg, "web-win-01")
        sp = vm.properties.security_profile
        assert sp is None or not sp.encryption_at_host, "VM unchanged"

    @check("upload_disk_grant_revoke_page_ops_async_operation")
    def _():
        disk_round(client, cfg, "async", location_only=False)

    @check("upload_disk_grant_revoke_page_ops_location_only")
    def _():
        disk_round(client_loc, cfg, "loc", location_only=True)

    @check("recreate_through_nic_reserved")
    def _():
        name = "plain-lin-01"
        old = client.virtual_machines.get(rg, name)
        os_disk = old.properties.storage_profile.os_disk
        nic = old.properties.network_profile.network_interfaces[0].id
        assert os_disk.delete_option == "Detach", os_disk.delete_option
        client.virtual_machines.begin_delete(rg, name).result()
        try:
            client.virtual_machines.get(rg, name)
            raise AssertionError("VM still there after delete")
        except ResourceNotFoundError:
            pass
        body = {
            "location": loc,
            "properties": {
                "hardwareProfile": {"vmSize": old.properties.hardware_profile.vm_size},
                "storageProfile": {
                    "osDisk": {
                        "osType": "Linux",
                        "createOption": "Attach",
                        "managedDisk": {"id": os_disk.managed_disk.id},
                        "deleteOption": "Detach",
                    },
                    "dataDisks": [],
                },
                "networkProfile": {
                    "networkInterfaces": [{"id": nic, "properties": {"deleteOption": "Detach"}}]
                },
            },
        }
        try:
            client.virtual_machines.begin_create_or_update(rg, name, body).result()
            raise AssertionError("re-create accepted while the NIC is held")
        except HttpResponseError as e:
            assert e.status_code == 400, e.status_code
            assert e.error.code == "NicReservedForAnotherVm", e.error.code
            assert "retry after 180 seconds" in e.error.message, e.error.message
        # The hold is simulated time: wait it out on the emulator's clock.
        time.sleep(cfg["nic_hold_secs"] / cfg["time_scale"] + 0.5)
        new = client.virtual_machines.begin_create_or_update(rg, name, body).result()
        assert new.name == name
        assert new.properties.provisioning_state == "Succeeded", new.properties.provisioning_state
        assert new.properties.vm_id != old.properties.vm_id, "a new VM"
        assert new.properties.storage_profile.os_disk.managed_disk.id.lower() == os_disk.managed_disk.id.lower()
        assert new.properties.network_profile.network_interfaces[0].id.lower() == nic.lower()

    print("SDK-CONFORMANCE " + json.dumps({"passed": PASSED}), flush=True)


if __name__ == "__main__":
    os.environ.setdefault("AZURE_CORE_DISABLE_LOGGING", "1")
    main()
