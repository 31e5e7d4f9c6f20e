// Package ssh is the SSH engine: stock OpenSSH clients log in as "<airlock user>:<target>", and
// the gateway relays their sessions, file transfers and port forwards to the target over its own
// SSH connection (pinned host key, the gateway's credential), recording each channel as it goes.
package ssh
