// Package image is the node's content-addressed image store.
//
// On disk, under the store's directory:
//
//	blobs/sha256/<hex>         layer blobs (as pulled or loaded), configs, manifests
//	layers/<diffid-hex>/fs     each layer extracted once, shared by every image
//	layers/<diffid-hex>/meta.json
//	images/<config-hex>.json   image records; an image ID is "sha256:<config digest>"
//	repositories.json          familiar tags and repo digests → image ID
//	tmp/                       work in progress, swept when the store opens
//
// Every file is written to tmp/ and renamed into place. A pull or load first
// commits its layers, then its blobs, and writes the image record and its
// tags last, so an interrupted pull leaves no image behind (orphaned layers
// are swept by the next Open or Prune).
//
// Layers are untrusted tenant input: the extractor resolves every path inside
// the target with openat2(RESOLVE_IN_ROOT), never follows a symlink out,
// skips device nodes and turns OCI whiteouts into overlayfs whiteouts.
// Containers get an overlayfs rootfs whose lower directories are the extracted
// layers (Prepare, Release, Changes), and docker cp, export and diff work on
// that rootfs with the same safe primitives (ArchivePath, StatPath,
// ExtractInto, Export).
package image
