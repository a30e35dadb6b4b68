-- POST the same JSON body on every request: wrk -s benchmarks/wrk/post_json.lua URL
-- The body is read once from the file named by the environment variable WRK_BODY_FILE
-- (benchmarks/serving.py writes it); optional WRK_HEADER_NAME/WRK_HEADER_VALUE add one header.
local path = os.getenv("WRK_BODY_FILE")
if path == nil or path == "" then
  error("set WRK_BODY_FILE to the JSON body to POST")
end
local file = assert(io.open(path, "rb"))
wrk.method = "POST"
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
local header_name = os.getenv("WRK_HEADER_NAME")
if header_name ~= nil and header_name ~= "" then
  wrk.headers[header_name] = os.getenv("WRK_HEADER_VALUE") or ""
end
