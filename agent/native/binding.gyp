{
  "targets": [
    {
      "target_name": "listenfd",
      "sources": ["listenfd.c"],
      "cflags": ["-Wall", "-Wextra", "-O2"]
    }
  ]
}
