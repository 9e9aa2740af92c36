// Package image is the node's content-addressed image store.
//
// On disk, under the store's directory:
//
//	blobs/sha256/<hex>         layer blobs (as pulled or loaded), configs, manifests
//	layers/<diffid-hex>/fs     each layer extracted once, shared by every image
//	layers/<diffid-hex>/meta.json
//	images/<config-hex>.json   image records; an image ID is "sha256:<config digest>"
//	repositories/<tenant>.json what a tenant owns: image IDs, familiar tags and
//	                           repo digests → image ID, what it pushed to the registry
//	tmp/                       work in progress (and registry uploads), swept when
//	                           the store opens
//
// Images and names belong to a tenant; content does not (tenant.go): the
// store is used through Tenant(name), a TenantView, and another tenant's
// image answers "No such image". Blobs, records and layers are stored once
// and shared underneath, invisibly: a layer another tenant has is reused
// only once the tenant showed its bytes, and content goes when its last
// owner deletes it. The node agent alone looks images up by ID across
// tenants (LookupID, Prepare). push.go is the registry's view: blobs,
// manifests and tags of a tenant, and pushed images becoming images.
//
// Every file is written to tmp/ and renamed into place. A pull, load or push
// first commits its layers, then its blobs, and writes the image record and
// the tenant's ownership and tags last, so an interrupted pull leaves no
// image behind (orphaned layers and unowned records are swept by the next
// Open or Prune).
//
// Layers are untrusted tenant input: the extractor resolves every path inside
// the target with openat2(RESOLVE_IN_ROOT), never follows a symlink out,
// skips device nodes and turns OCI whiteouts into overlayfs whiteouts.
// Containers get an overlayfs rootfs whose lower directories are the extracted
// layers (Prepare, Release, Changes), and docker cp, export and diff work on
// that rootfs with the same safe primitives (ArchivePath, StatPath,
// ExtractInto, Export).
package image
