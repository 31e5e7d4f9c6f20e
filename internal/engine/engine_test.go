package engine

import (
	"errors"
	"fmt"
	"testing"
)

func TestEndReason(t *testing.T) {
	for cause, want := range map[error]string{
		ErrShutdown: EndShutdown,
		fmt.Errorf("%w: on call duty", ErrTerminated): EndTerminated,
		ErrMaxDuration:               EndMaxDuration,
		errors.New("something else"): EndShutdown,
	} {
		if got := EndReason(cause); got != want {
			t.Errorf("EndReason(%v) = %q, want %q", cause, got, want)
		}
	}
}
