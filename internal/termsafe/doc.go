// Package termsafe prints recorded text to a terminal so that the viewer sees it and the
// viewer's terminal does not obey it.
package termsafe
