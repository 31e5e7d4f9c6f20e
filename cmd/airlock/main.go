// Command airlock is the Airlock gateway, agent and client in one binary.
package main

import (
	"os"

	"github.com/airlock-gw/airlock/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
