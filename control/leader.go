package control

import (
	"context"
	"log/slog"
	"time"

	"github.com/macro-cloud/macro/store"
)

// Election is the name of the election among servers for the control loop.
const Election = "control"

// DefaultLeaderTTL is how long a leader that stops answering keeps the
// leadership: another server leads after about this long.
const DefaultLeaderTTL = 5 * time.Second

// LeaderConfig configures RunAsLeader.
type LeaderConfig struct {
	// ID names this server among the candidates (its node name).
	ID string
	// TTL of the leader's session (DefaultLeaderTTL when zero).
	TTL time.Duration
	Log *slog.Logger
}

// RunAsLeader runs run only while this server leads the servers of the
// cluster, so that exactly one server runs it at a time: it campaigns,
// calls run with a context that is cancelled when the leadership is lost,
// and campaigns again. It returns when ctx ends, having resigned.
func RunAsLeader(ctx context.Context, st *store.Store, cfg LeaderConfig, run func(ctx context.Context)) {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultLeaderTTL
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	log := cfg.Log.With("subsystem", "leader")
	for ctx.Err() == nil {
		lead, resign, err := st.Lead(ctx, Election, cfg.ID, cfg.TTL)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("cannot campaign for leadership; retrying", "err", err)
				leaderPause(ctx, time.Second)
			}
			continue
		}
		if lead.Err() == nil {
			log.Info("this server leads the cluster: running the control loop", "id", cfg.ID)
			run(lead)
		}
		lost := lead.Err() != nil && ctx.Err() == nil
		resign()
		switch {
		case ctx.Err() != nil:
			return
		case lost:
			log.Warn("this server no longer leads; campaigning again", "id", cfg.ID)
		default:
			log.Warn("the control loop returned while leading; resigned, campaigning again", "id", cfg.ID)
			leaderPause(ctx, time.Second)
		}
	}
}

func leaderPause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
