package client

import (
	"context"
	"net/http"
	"net/url"
	"time"
)

// VolumeKey is an access key of a volume (WebDAV and S3 without a pod).
// Secret is set once, in the answer of CreateVolumeKey.
type VolumeKey struct {
	ID          string    `json:"id"`
	Volume      string    `json:"volume"` // "" for all the tenant's volumes
	ReadOnly    bool      `json:"readOnly"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Secret      string    `json:"secret,omitempty"`
}

// VolumeKeyOptions says what a new volume key reaches.
type VolumeKeyOptions struct {
	Volume      string `json:"volume,omitempty"`
	All         bool   `json:"all,omitempty"` // all the tenant's volumes instead of Volume
	ReadOnly    bool   `json:"readOnly,omitempty"`
	Description string `json:"description,omitempty"`
}

// VolumeKeys lists the tenant's volume keys, of one volume or, with
// volume "", of all.
func (c *Client) VolumeKeys(ctx context.Context, volume string) ([]VolumeKey, error) {
	path := APIPrefix + "/volumekeys"
	if volume != "" {
		path += "?volume=" + url.QueryEscape(volume)
	}
	var out []VolumeKey
	err := c.call(ctx, request{method: http.MethodGet, path: path, token: true}, &out)
	return out, err
}

// CreateVolumeKey makes a volume key; its secret is in the answer only.
func (c *Client) CreateVolumeKey(ctx context.Context, o VolumeKeyOptions) (*VolumeKey, error) {
	var out VolumeKey
	if err := c.call(ctx, request{method: http.MethodPost, path: APIPrefix + "/volumekeys", token: true, body: o}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// RemoveVolumeKey revokes a volume key.
func (c *Client) RemoveVolumeKey(ctx context.Context, id string) error {
	return c.call(ctx, request{method: http.MethodDelete, path: APIPrefix + "/volumekeys/" + url.PathEscape(id), token: true}, nil)
}
