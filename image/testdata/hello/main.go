// A small program the image test builds statically and packs as the
// image's binary.
package main

import "fmt"

func main() { fmt.Println("hello from the image test") }
