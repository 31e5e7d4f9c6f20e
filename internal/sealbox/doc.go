// Package sealbox encrypts what the gateway must keep but never show in clear (the original,
// unmasked values of masked rows) with AES-256-GCM keys kept in data_dir/keys.
package sealbox
