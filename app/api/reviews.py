"""Reviews of movies: accepted here, written by the worker."""
from __future__ import annotations

from flask.views import MethodView

from app.api import Blueprint
from app.api import schemas as s
from app.api.security import current_user_id, login_required
from app.services import reviews as review_service

reviews = Blueprint("reviews", __name__, url_prefix="/api/v1/movies", description="Reviews")
blueprints = [reviews]


@reviews.route("/<int:movie_id>/reviews")
class MovieReviews(MethodView):
    @login_required
    @reviews.arguments(s.ReviewRequestSchema, example=s.REVIEW_IN)
    @reviews.response(202, s.ReviewAcceptedSchema, example=s.REVIEW_ACCEPTED)
    @reviews.alt_response(403, response="FORBIDDEN", description="not_eligible")
    @reviews.alt_response(404, response="NOT_FOUND")
    def post(self, data, movie_id):
        """Review a movie you have seen (processed in the background; a second replaces the first)"""
        review_service.submit_review(current_user_id(), movie_id, data["rating"], data["text"])
        return {"status": "accepted"}

    @reviews.arguments(s.PageQuerySchema, location="query")
    @reviews.response(200, s.ReviewListSchema, example=s.REVIEW_LIST)
    @reviews.alt_response(404, response="NOT_FOUND")
    def get(self, args, movie_id):
        """A movie's reviews, newest first, with its average rating and review count"""
        movie, items, total = review_service.list_reviews(movie_id, args["page"], args["page_size"])
        return {"movie_id": movie.id, "average_rating": movie.average_rating, "review_count": movie.review_count,
                "items": items, "page": args["page"], "page_size": args["page_size"], "total": total}
