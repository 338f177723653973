package store_test

import "sync"

var schemaCache sync.Map
