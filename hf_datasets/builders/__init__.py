"""One builder per data set family; each turns an original layout into a Recipe."""
