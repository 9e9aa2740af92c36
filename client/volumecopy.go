package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
)

// CopyVolumeRequest is what kra volume copy asks: DST, and for a DST that
// does not exist yet, its driver, size and zone (the source's by default).
type CopyVolumeRequest struct {
	To     string `json:"to"`
	Driver string `json:"driver,omitempty"`
	Size   string `json:"size,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Verify bool   `json:"verify,omitempty"`
}

// CopyVolumeResult says what a copy did.
type CopyVolumeResult struct {
	From       string  `json:"from"`
	To         string  `json:"to"`
	Created    bool    `json:"created"`
	Node       string  `json:"node,omitempty"`
	Files      int     `json:"files"`
	Bytes      int64   `json:"bytes"`
	Chunks     int     `json:"chunks"`
	SentChunks int     `json:"sentChunks"`
	SentBytes  int64   `json:"sentBytes"`
	Seconds    float64 `json:"seconds"`
}

// CopyVolume copies volume from into req.To with the delta-sync engine.
// It takes as long as the copy: no deadline.
func (c *Client) CopyVolume(ctx context.Context, from string, req CopyVolumeRequest) (*CopyVolumeResult, error) {
	resp, cancel, err := c.do(ctx, request{method: http.MethodPost, path: volumePath(from, "copy"), token: true, body: req, stream: true})
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer resp.Body.Close()
	var out CopyVolumeResult
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&out); err != nil {
		return nil, fmt.Errorf("copy %s: reading the answer: %w", from, err)
	}
	return &out, nil
}
