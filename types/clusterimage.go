package types

import "time"

// ClusterImage is one image of a tenant as the cluster's image index
// holds it (/macro/images/<tenant>/<hex of ID>): the truth about which
// images a tenant has and how it names them, whichever server holds the
// blobs. Each server's image store is a copy of part of it.
type ClusterImage struct {
	Tenant   string `json:"tenant"`
	ID       string `json:"id"`                 // "sha256:<config digest>"
	Manifest string `json:"manifest,omitempty"` // manifest digest, if it came with one
	Parent   string `json:"parent,omitempty"`
	// RepoTags ("busybox:latest") and RepoDigests ("busybox@sha256:..."),
	// sorted; a tag names one image of the tenant only.
	RepoTags    []string          `json:"repoTags,omitempty"`
	RepoDigests []string          `json:"repoDigests,omitempty"`
	Created     time.Time         `json:"created"`
	Arch        string            `json:"arch,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Layers are the image's layers, lowest first, with the bytes each
	// takes extracted: what `docker images` and the tenant's quota count.
	Layers []ClusterImageLayer `json:"layers,omitempty"`
	// Holders are the servers whose image store has the image for the
	// tenant (alive or not), sorted.
	Holders []string `json:"holders,omitempty"`
}

// ClusterImageLayer is a layer of a ClusterImage.
type ClusterImageLayer struct {
	DiffID string `json:"diffID"`
	Size   int64  `json:"size"`
}

// Size is the bytes of the image's distinct layers.
func (c ClusterImage) Size() int64 {
	seen := map[string]bool{}
	var n int64
	for _, l := range c.Layers {
		if !seen[l.DiffID] {
			seen[l.DiffID] = true
			n += l.Size
		}
	}
	return n
}

// HeldBy says whether server holds the image.
func (c ClusterImage) HeldBy(server string) bool {
	for _, h := range c.Holders {
		if h == server {
			return true
		}
	}
	return false
}
