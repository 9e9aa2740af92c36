package docker

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/macro-cloud/macro/runtime"
	"github.com/macro-cloud/macro/types"
)

type cpuStats struct {
	CPUUsage struct {
		TotalUsage        uint64 `json:"total_usage"`
		UsageInKernelmode uint64 `json:"usage_in_kernelmode"`
		UsageInUsermode   uint64 `json:"usage_in_usermode"`
	} `json:"cpu_usage"`
	SystemUsage    uint64         `json:"system_cpu_usage,omitempty"`
	OnlineCPUs     uint32         `json:"online_cpus,omitempty"`
	ThrottlingData map[string]int `json:"throttling_data"`
}

type statsJSON struct {
	Name        string   `json:"name"`
	ID          string   `json:"id"`
	Read        string   `json:"read"`
	PreRead     string   `json:"preread"`
	PidsStats   any      `json:"pids_stats"`
	BlkioStats  any      `json:"blkio_stats"`
	NumProcs    uint32   `json:"num_procs"`
	CPUStats    cpuStats `json:"cpu_stats"`
	PreCPUStats cpuStats `json:"precpu_stats"`
	MemoryStats any      `json:"memory_stats"`
}

func toCPU(s runtime.Stats) cpuStats {
	var c cpuStats
	c.CPUUsage.TotalUsage = s.CPUUsageNanos
	c.SystemUsage = s.SystemNanos
	c.OnlineCPUs = uint32(s.OnlineCPUs)
	c.ThrottlingData = map[string]int{"periods": 0, "throttled_periods": 0, "throttled_time": 0}
	return c
}

func (s *Server) statsContainer(w http.ResponseWriter, r *http.Request) error {
	p, err := s.pod(r)
	if err != nil {
		return err
	}
	stream := r.URL.Query().Get("stream") == "" || boolValue(r, "stream")
	oneShot := boolValue(r, "one-shot")
	st, err := s.store.Status(r.Context(), p.Tenant, p.ID)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	if !st.Phase.Up() {
		// Docker answers a stopped container with zeroed figures.
		w.WriteHeader(http.StatusOK)
		return enc.Encode(statsJSON{Name: "/" + p.Name, ID: p.ID, Read: zeroTime, PreRead: zeroTime, PidsStats: map[string]any{}, BlkioStats: map[string]any{}, MemoryStats: map[string]any{}})
	}
	node, err := s.nodeOf(r.Context(), p)
	if err != nil {
		return err
	}
	prev, err := node.Stats(r.Context(), p.ID)
	if err != nil {
		return nodeError(err, p)
	}
	w.WriteHeader(http.StatusOK)
	if oneShot && !stream {
		return enc.Encode(statsOf(p, prev, runtime.Stats{}))
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	delay := time.After(500 * time.Millisecond)
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-delay:
			delay = nil
		case <-tick.C:
		}
		cur, err := node.Stats(r.Context(), p.ID)
		if err != nil {
			return nil
		}
		if err := enc.Encode(statsOf(p, cur, prev)); err != nil {
			return nil
		}
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		if !stream {
			return nil
		}
		prev = cur
	}
}

func statsOf(p types.Pod, cur, prev runtime.Stats) statsJSON {
	out := statsJSON{
		Name: "/" + p.Name, ID: p.ID,
		Read:     cur.Read.UTC().Format(time.RFC3339Nano),
		PreRead:  zeroTime,
		NumProcs: 0,
		CPUStats: toCPU(cur), PreCPUStats: toCPU(prev),
		PidsStats:  map[string]uint64{"current": cur.PidsCurrent, "limit": cur.PidsLimit},
		BlkioStats: map[string]any{"io_service_bytes_recursive": nil},
		MemoryStats: map[string]any{
			"usage": cur.MemoryUsage, "limit": cur.MemoryLimit,
			"stats": map[string]uint64{"cache": cur.MemoryCache, "total_inactive_file": cur.MemoryCache},
		},
	}
	if !prev.Read.IsZero() {
		out.PreRead = prev.Read.UTC().Format(time.RFC3339Nano)
	}
	return out
}
