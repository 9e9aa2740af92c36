package docker

// Images in a cluster: each server's image store holds part of the
// cluster's images, and the cluster's image index is the truth about
// which images a tenant has and how they are named (cmd/macro
// clusterimages.go). Before an image endpoint reads or changes names it
// brings the store in line with the index (Sync); `docker images` lists
// the images other servers hold from the index; tag, rmi and prune of an
// image held elsewhere copy it here first, then act as on one server, and
// the store's commit tells the index, which the other servers follow.

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/macro-cloud/macro/image"
	"github.com/macro-cloud/macro/types"
)

// ClusterImages is what the API needs from the cluster's image index.
type ClusterImages interface {
	// Sync makes this server's images of tenant those of the index and
	// lists the index's images of the tenant that this server does not
	// hold (one read of the index).
	Sync(ctx context.Context, tenant string) (elsewhere []types.ClusterImage, err error)
	// Fetch copies image id of tenant here from a server that holds it.
	Fetch(ctx context.Context, tenant, id string) error
}

// syncImages brings the caller's tenant's images here in line with the
// cluster's index (nothing on a server without one), and returns those
// only other servers hold.
func (s *Server) syncImages(r *http.Request) ([]types.ClusterImage, error) {
	if s.cluster == nil {
		return nil, nil
	}
	return s.cluster.Sync(r.Context(), tenantOf(r))
}

func imageOfIndex(c types.ClusterImage) image.Image {
	img := image.Image{
		ID:          c.ID,
		RepoTags:    append([]string{}, c.RepoTags...),
		RepoDigests: append([]string{}, c.RepoDigests...),
		Created:     c.Created,
		Size:        c.Size(),
		Parent:      c.Parent,
		Manifest:    c.Manifest,
	}
	img.Config.Architecture = c.Arch
	img.Config.OS = "linux"
	img.Config.Created = v1.Time{Time: c.Created}
	img.Config.Config.Labels = c.Labels
	for _, l := range c.Layers {
		img.Layers = append(img.Layers, l.DiffID)
	}
	return img
}

// fetchNamed copies here the image of the caller's tenant that ref names
// in the cluster's index (others: its images this server lacks) when this
// server does not hold it (the names here are the index's after
// syncImages).
func (s *Server) fetchNamed(r *http.Request, ref string, others []types.ClusterImage) {
	if len(others) == 0 {
		return
	}
	if _, err := s.lookupImage(r, ref); err == nil {
		return
	}
	familiar, ok := s.tenantImages(r).Familiar(ref)
	for _, c := range others {
		if indexNames(c, ref, familiar, ok) {
			if err := s.cluster.Fetch(r.Context(), tenantOf(r), c.ID); err != nil {
				s.log.Debug("image from the other servers", "image", ref, "err", err)
				return
			}
			if _, err := s.syncImages(r); err != nil {
				s.log.Debug("the cluster's image index", "err", err)
			}
			return
		}
	}
}

// indexNames says whether ref names image c: its full or short ID, or,
// once the store's parser made it familiar (familiar, ok), one of its
// tags or digest references.
func indexNames(c types.ClusterImage, ref, familiar string, ok bool) bool {
	hex := strings.TrimPrefix(c.ID, "sha256:")
	if ref == c.ID || len(ref) >= 4 && len(ref) <= 64 && strings.HasPrefix(hex, strings.TrimPrefix(ref, "sha256:")) {
		return true
	}
	return ok && (slices.Contains(c.RepoTags, familiar) || slices.Contains(c.RepoDigests, familiar))
}

// here brings the caller's tenant's names in line with the index and the
// image ref names here if another server holds it: what follows acts on
// this server's store as on a single server.
func (s *Server) here(r *http.Request, ref string) {
	if s.cluster == nil {
		return
	}
	others, err := s.syncImages(r)
	if err != nil {
		s.log.Warn("the cluster's image index", "err", err)
		return
	}
	s.fetchNamed(r, ref, others)
}

// pruneHere copies here the tenant's images held elsewhere that a prune
// may remove (the dangling ones; all with all), so that the prune of this
// store is the cluster's.
func (s *Server) pruneHere(r *http.Request, all bool) error {
	if s.cluster == nil {
		return nil
	}
	others, err := s.syncImages(r)
	if err != nil {
		return err
	}
	fetched := false
	for _, c := range others {
		if all || len(c.RepoTags) == 0 {
			if err := s.cluster.Fetch(r.Context(), tenantOf(r), c.ID); err != nil {
				return err
			}
			fetched = true
		}
	}
	if fetched {
		_, err = s.syncImages(r)
	}
	return err
}

// sortImages orders images as the store lists them: newest first.
func sortImages(imgs []image.Image) {
	sort.SliceStable(imgs, func(i, j int) bool {
		if !imgs[i].Created.Equal(imgs[j].Created) {
			return imgs[i].Created.After(imgs[j].Created)
		}
		return imgs[i].ID < imgs[j].ID
	})
}
