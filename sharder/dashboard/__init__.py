"""The live dashboard's static page, served by sharder.http_server."""
