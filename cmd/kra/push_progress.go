package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/macro-cloud/macro/client"
)

// terminalSize is the width and height of w when it is a terminal (0
// when not; a height of 0 is unknown).
func terminalSize(w io.Writer) (width, height int) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, 0
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return 0, 0
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 80, 0
	}
	return int(ws.Col), int(ws.Row)
}

// pushView shows the progress of one image's push: on a terminal, a line
// per layer redrawn in place (phase, a bar, bytes, speed); elsewhere (CI
// logs), a plain line when a layer changes phase, and every few seconds
// while one moves.
type pushView struct {
	w     io.Writer
	width int // 0: not a terminal
	now   func() time.Time

	rows  []*layerRow
	drawn int // lines drawn last time (terminal)
	last  time.Time
}

type layerRow struct {
	id       string
	phase    client.PushPhase
	cur, tot int64
	since    time.Time // when the phase began
	upSince  time.Time // when it began pushing
	said     time.Time // last plain line about it
}

// plainEvery is how often a plain line tells how far a moving layer is.
const plainEvery = 5 * time.Second

// newPushView makes the view of a push of layers; on a terminal of width
// and height (0: not a terminal; a height of 0: unknown). Lines redrawn in
// place must all fit on the screen: with more layers than that, plain
// lines.
func newPushView(w io.Writer, width, height, layers int) *pushView {
	if height > 0 && layers+2 > height {
		width = 0
	}
	v := &pushView{w: w, width: width, now: time.Now}
	for range layers {
		v.rows = append(v.rows, &layerRow{})
	}
	return v
}

// update takes one event of client.Push.
func (v *pushView) update(ev client.PushProgress) {
	if ev.Layer < 0 || ev.Layer >= len(v.rows) {
		return // the config: a few hundred bytes, not shown
	}
	r := v.rows[ev.Layer]
	now := v.now()
	changed := r.phase != ev.Phase
	if changed {
		r.since = now
		if ev.Phase == client.PhaseUploading {
			r.upSince = now
		}
	}
	if r.id == "" {
		r.id = ev.ID // a layer keeps its first name (its diffID's, until a blob is made of it)
	}
	r.phase, r.cur, r.tot = ev.Phase, ev.Current, ev.Total
	if v.width > 0 {
		if ev.Phase == client.PhaseWaiting && ev.Layer < len(v.rows)-1 {
			return // the first frame once every layer has its line
		}
		if changed || now.Sub(v.last) >= 100*time.Millisecond {
			v.draw()
			v.last = now
		}
		return
	}
	switch {
	case changed && ev.Phase != client.PhaseWaiting && ev.Phase != client.PhaseChecking:
		fmt.Fprintf(v.w, "%s: %s\n", r.id, v.describe(r, now, true))
		r.said = now
	case !changed && now.Sub(r.said) >= plainEvery:
		fmt.Fprintf(v.w, "%s: %s\n", r.id, v.describe(r, now, false))
		r.said = now
	}
}

// describe says where a layer is, in words: as it starts a phase, or on
// its way.
func (v *pushView) describe(r *layerRow, now time.Time, start bool) string {
	switch r.phase {
	case client.PhasePushed:
		s := fmt.Sprintf("pushed %s", formatSize(r.tot))
		if !r.upSince.IsZero() {
			el := now.Sub(r.upSince)
			s += " in " + el.Round(time.Millisecond).String()
			if sp := speed(r.tot, el); sp != "" {
				s += " (" + sp + ")"
			}
		}
		return s
	case client.PhaseCompressing, client.PhaseHashing, client.PhaseUploading:
		if start {
			if r.tot > 0 {
				return string(r.phase) + " " + formatSize(r.tot)
			}
			return string(r.phase)
		}
		s := string(r.phase) + " " + amount(r.cur, r.tot)
		if sp := speed(r.cur, now.Sub(r.since)); sp != "" {
			s += ", " + sp
		}
		return s
	}
	return string(r.phase)
}

// amount is "12.3MB/45.6MB" or "12.3MB" when the total is unknown.
func amount(cur, tot int64) string {
	if tot > 0 {
		return formatSize(cur) + "/" + formatSize(tot)
	}
	return formatSize(cur)
}

func speed(n int64, el time.Duration) string {
	if el < 200*time.Millisecond || n == 0 {
		return ""
	}
	return formatSize(int64(float64(n)/el.Seconds())) + "/s"
}

// draw redraws the layer lines in place.
func (v *pushView) draw() {
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA", v.drawn)
	}
	now := v.now()
	for _, r := range v.rows {
		b.WriteString("\x1b[2K")
		b.WriteString(v.line(r, now))
		b.WriteByte('\n')
	}
	v.drawn = len(v.rows)
	io.WriteString(v.w, b.String())
}

// line is a layer's line on a terminal: id, phase, bar, amount, speed.
func (v *pushView) line(r *layerRow, now time.Time) string {
	id := r.id
	if id == "" {
		id = strings.Repeat(" ", 12)
	}
	s := fmt.Sprintf("%-12s  %-14s", id, r.phase)
	moving := r.phase == client.PhaseCompressing || r.phase == client.PhaseHashing || r.phase == client.PhaseUploading
	if moving || r.phase == client.PhasePushed {
		barWidth := min(30, max(v.width-len(s)-36, 0))
		if barWidth >= 10 {
			s += " " + bar(r.cur, r.tot, barWidth)
		}
		s += " " + amount(r.cur, r.tot)
		if moving {
			if sp := speed(r.cur, now.Sub(r.since)); sp != "" {
				s += "  " + sp
			}
		}
	}
	if len(s) > v.width && v.width > 0 {
		s = s[:v.width]
	}
	return s
}

// bar is [=====>    ] of width w.
func bar(cur, tot int64, w int) string {
	inner := w - 2
	fill := 0
	if tot > 0 {
		fill = int(float64(inner) * float64(min(cur, tot)) / float64(tot))
	}
	s := strings.Repeat("=", fill)
	if fill < inner {
		s += ">" + strings.Repeat(" ", inner-fill-1)
	}
	return "[" + s + "]"
}

// finish draws the final state.
func (v *pushView) finish() {
	if v.width > 0 {
		v.draw()
	}
}
