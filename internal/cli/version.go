package cli

import (
	"fmt"

	"github.com/airlock-gw/airlock/internal/version"
)

func init() {
	register("version", "print the version", func(args []string) int {
		fmt.Println("airlock " + version.String())
		return 0
	})
}
