package kubernetes

import (
	"sync"
	"time"

	"github.com/airlock-gw/airlock/internal/event"
	"github.com/airlock-gw/airlock/internal/masking"
)

// When the policy for the target names masking detectors (credit_card, email...), what an
// exec or attach prints (stdout and stderr) and a followed log (logs -f) are masked the way an
// SSH channel's output is: the client and the recording get the same masked bytes, and a value
// split between two reads is masked as if it had come in one (masking.Stream holds back a tail
// that could be the first part of a value until the next read, a short pause of the target, or
// the end of the stream: masking.HoldFor). As SSH's, the masked originals are not kept.

// maskedOutput masks one output stream. emit records and forwards what is ready (masked, with
// the detectors' hits); it runs with mu held, from the stream's copier or from the timer that
// flushes a held tail.
type maskedOutput struct {
	mu    sync.Mutex
	ms    *masking.Stream
	hold  time.Duration // how long a held-back tail waits (masking.HoldFor)
	timer *time.Timer
	ended bool
	err   error // an emit of the timer's failed: the next write reports it
	emit  func(data []byte, hits []masking.Hit) error
}

func newMaskedOutput(mk *masking.Masker, hold time.Duration, emit func([]byte, []masking.Hit) error) *maskedOutput {
	return &maskedOutput{ms: mk.NewStream(), hold: hold, emit: emit}
}

// write masks p (which it does not keep) and emits what need not be held back.
func (m *maskedOutput) write(p []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err != nil {
		return m.err
	}
	if m.timer != nil {
		m.timer.Stop()
	}
	if out, hits := m.ms.Next(p, true); len(out) > 0 {
		if err := m.emit(out, hits); err != nil {
			return err
		}
	}
	if m.ms.Held() > 0 && !m.ended {
		if m.timer == nil {
			m.timer = time.AfterFunc(m.hold, m.flush)
		} else {
			m.timer.Reset(m.hold)
		}
	}
	return nil
}

// flush emits what is held back (the target paused, or something else must go out after it).
func (m *maskedOutput) flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended || m.err != nil || m.ms.Held() == 0 {
		return
	}
	if out, hits := m.ms.Flush(); len(out) > 0 {
		m.err = m.emit(out, hits)
	}
}

// end emits what is held back at the end of the stream; nothing is emitted after it.
func (m *maskedOutput) end() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ended {
		return m.err
	}
	m.ended = true
	if m.timer != nil {
		m.timer.Stop()
	}
	if m.err == nil && m.ms.Held() > 0 {
		if out, hits := m.ms.Flush(); len(out) > 0 {
			m.err = m.emit(out, hits)
		}
	}
	return m.err
}

// terminalOutput is the terminal.output event of masked output.
func terminalOutput(ch uint32, stream string, data []byte, hits []masking.Hit) event.TerminalData {
	d := event.TerminalData{Channel: ch, Stream: stream, Bytes: len(data)}
	if len(hits) > 0 {
		d.Masked = map[string]int{}
		for _, h := range hits {
			d.Masked[h.Detector]++
		}
	}
	return d
}
