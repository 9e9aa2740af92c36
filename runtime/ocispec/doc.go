// Package ocispec turns a pod's spec and its image's config into an OCI
// runtime-spec (config.json) that behaves like the container dockerd 20.10
// would run for the same `docker run`: Docker's entrypoint/cmd and
// environment rules, its user resolution against the image's /etc/passwd and
// /etc/group, its default capabilities, namespaces, mounts, masked and
// read-only paths, device allow-list, default seccomp profile and cgroup
// (v1) limits.
//
// The package only computes; the caller (the node agent) prepares the rootfs,
// writes the /etc files (WriteEtcFiles helps) and hands the bundle to a
// runtime. Nothing here talks to the store, the API or an image store.
//
// Differences from dockerd, on purpose:
//   - Spec.Init has an effect only when the caller provides an init binary
//     (Input.InitPath, bind-mounted at /sbin/docker-init as Docker does);
//     macro ships no tini, so without one Init is ignored.
//   - The working directory is not created here: runc creates process.cwd
//     inside the container (as root, mode 0755) before it makes the rootfs
//     read-only, which is what Docker's SetupWorkingDirectory achieves.
//   - HOME is written into the environment from the image's passwd file
//     (runc would add the same value when it is absent).
//   - The primary group is listed first in the additional gids, as newer
//     dockerd does, so that "negative" group permissions cannot be escaped by
//     dropping it.
package ocispec
