-- wrk script: POST /links with a form body and Basic auth, as the official libraries send it.
wrk.method = "POST"
wrk.path = "/links"
wrk.body = "amount=100000&currency=thb&title=Hot+Latte&description=A+warm+cup&multiple=true"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic c2tleV90ZXN0X2JlbmNobWFyazo="
